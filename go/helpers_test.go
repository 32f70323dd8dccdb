package kiln

// What the tests share: the NumPy-made data (tests/gen/go_data.py, run once
// per `go test` into a temporary folder), a .npy reader and comparisons.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// dataDir holds the references; root is the kiln tree.
var dataDir, root string

func TestMain(m *testing.M) {
	wd, _ := os.Getwd()
	root = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "kiln-go-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gen := exec.Command("/usr/bin/python3", filepath.Join(root, "tests/gen/go_data.py"), dir)
	if out, err := gen.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "tests/gen/go_data.py failed: %v\n%s", err, out)
		os.Exit(1)
	}
	dataDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func data(name string) string { return filepath.Join(dataDir, name) }

var npyHeader = regexp.MustCompile(`'descr':\s*'([<>|])(\w\d)'.*'fortran_order':\s*(\w+).*'shape':\s*\(([^)]*)\)`)

// readNpy reads a little-endian, C-order .npy file into a Tensor (float16
// and uint16 arrays as f16 and bf16 bit patterns).
func readNpy(t testing.TB, name string) *Tensor {
	t.Helper()
	b, err := os.ReadFile(data(name))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 10 || string(b[1:6]) != "NUMPY" {
		t.Fatalf("%s: not a .npy file", name)
	}
	var hlen, off int
	if b[6] == 1 {
		hlen, off = int(binary.LittleEndian.Uint16(b[8:])), 10
	} else {
		hlen, off = int(binary.LittleEndian.Uint32(b[8:])), 12
	}
	m := npyHeader.FindStringSubmatch(string(b[off : off+hlen]))
	if m == nil || m[1] == ">" || m[3] != "False" {
		t.Fatalf("%s: unexpected header %q", name, b[off:off+hlen])
	}
	var shape []int64
	for _, s := range strings.Split(m[4], ",") {
		if s = strings.TrimSpace(s); s != "" {
			n, _ := strconv.ParseInt(s, 10, 64)
			shape = append(shape, n)
		}
	}
	raw := b[off+hlen:]
	n := numel(shape)
	var tensor *Tensor
	switch m[2] {
	case "f4":
		v := make([]float32, n)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		tensor = &Tensor{"f32", shape, v}
	case "f8":
		v := make([]float64, n)
		for i := range v {
			v[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		}
		tensor = &Tensor{"f64", shape, v}
	case "i4":
		v := make([]int32, n)
		for i := range v {
			v[i] = int32(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		tensor = &Tensor{"i32", shape, v}
	case "i8":
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		}
		tensor = &Tensor{"i64", shape, v}
	case "b1":
		v := make([]bool, n)
		for i := range v {
			v[i] = raw[i] != 0
		}
		tensor = &Tensor{"bool", shape, v}
	case "f2", "u2":
		v := make([]uint16, n)
		for i := range v {
			v[i] = binary.LittleEndian.Uint16(raw[2*i:])
		}
		tensor = &Tensor{map[string]string{"f2": "f16", "u2": "bf16"}[m[2]], shape, v}
	default:
		t.Fatalf("%s: dtype %s not handled", name, m[2])
	}
	return tensor
}

// floats returns a tensor's values as float64 (f16/bf16 decoded).
func floats(t *Tensor) []float64 {
	var out []float64
	switch d := t.Data.(type) {
	case []float32:
		for _, v := range d {
			out = append(out, float64(v))
		}
	case []float64:
		out = append(out, d...)
	case []int32:
		for _, v := range d {
			out = append(out, float64(v))
		}
	case []int64:
		for _, v := range d {
			out = append(out, float64(v))
		}
	case []bool:
		for _, v := range d {
			out = append(out, map[bool]float64{false: 0, true: 1}[v])
		}
	case []uint16:
		for _, v := range Float32Of(t.DType, d) {
			out = append(out, float64(v))
		}
	}
	return out
}

// closeTo compares got with want: same dtype and shape, and every element
// within atol + rtol*|want| (0, 0: exactly; integers compare exactly).
func closeTo(got, want *Tensor, rtol, atol float64) error {
	if got.DType != want.DType || fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) {
		return fmt.Errorf("got %s%v, want %s%v", got.DType, got.Shape, want.DType, want.Shape)
	}
	if g, ok := got.Data.([]int64); ok { // beyond float64's exact range
		for i, w := range want.Data.([]int64) {
			if g[i] != w {
				return fmt.Errorf("element %d: got %d, want %d", i, g[i], w)
			}
		}
		return nil
	}
	g, w := floats(got), floats(want)
	for i := range w {
		if d := math.Abs(g[i] - w[i]); d > atol+rtol*math.Abs(w[i]) || math.IsNaN(d) {
			return fmt.Errorf("element %d: got %g, want %g (|diff| %g)", i, g[i], w[i], d)
		}
	}
	return nil
}

// asError checks that err is an *Error with the status, and that its message
// holds every piece of text given.
func asError(t *testing.T, what string, err error, status int, texts ...string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("%s: got %T %v, want an *Error", what, err, err)
		return nil
	}
	if e.Status != status {
		t.Errorf("%s: status %d, want %d (%s)", what, e.Status, status, e.Message)
	}
	for _, s := range texts {
		if !strings.Contains(e.Message, s) {
			t.Errorf("%s: message %q lacks %q", what, e.Message, s)
		}
	}
	return e
}

func mustLoad(t testing.TB, path string, opt Options) *Model {
	t.Helper()
	m, err := Load(path, opt)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return m
}
