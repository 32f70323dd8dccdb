package kiln

// `kiln aot` bundles used from Go without the kiln library: the generated
// NAME.go wrapper (runtime/aot_go.c) of a --target=cpu bundle is built into
// a program of its own module, which must link neither libkiln nor LLVM,
// and run from 8 goroutines at once against NumPy (and a bundle of every
// dtype, against NumPy too); a --target=cuda bundle
// must build and link (against the toolkit's stub libcuda; it runs only
// where a GPU is: then it is checked against NumPy too).

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The program that uses a bundle: reads every parameter from DIR/NAME.bin,
// runs from 8 goroutines at once, checks they agree, writes DIR/out0.bin.
const aotMain = `package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"sync"

	"aotcheck/PKG"
)

func read(dir, name string) []float32 {
	b, err := os.ReadFile(dir + "/" + name + ".bin")
	if err != nil {
		panic(err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func main() {
	dir := os.Args[1]
	outs := make([][]float32, 8)
	var wg sync.WaitGroup
	for g := range outs {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			out, err := PKG.Run(ARGS)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			outs[g] = out
		}(g)
	}
	wg.Wait()
	for g := range outs {
		for i := range outs[0] {
			if outs[g][i] != outs[0][i] {
				fmt.Fprintf(os.Stderr, "goroutine %d differs at %d\n", g, i)
				os.Exit(1)
			}
		}
	}
	if _, err := WRONGCALL; err == nil {
		fmt.Fprintln(os.Stderr, "a wrong-length input was accepted")
		os.Exit(1)
	}
	b := make([]byte, 4*len(outs[0]))
	for i, v := range outs[0] {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	if err := os.WriteFile(dir+"/out0.bin", b, 0o644); err != nil {
		panic(err)
	}
}
`

// aotProgram writes the bundle of graph file (dims, target) into module
// dir as package pkg, the inputs as .bin files, and main.go.
func aotProgram(t *testing.T, dir, file, pkg, target string, dims []string, inputs map[string]string) []string {
	t.Helper()
	kiln := filepath.Join(root, "build/kiln")
	args := []string{"aot", filepath.Join(root, file), "--target=" + target, "-o", filepath.Join(dir, pkg)}
	for _, d := range dims {
		args = append(args, "--dim", d)
	}
	if out, err := exec.Command(kiln, args...).CombinedOutput(); err != nil {
		t.Fatalf("kiln %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, f := range []string{pkg + ".go", pkg + ".h", "README"} {
		if _, err := os.Stat(filepath.Join(dir, pkg, f)); err != nil {
			t.Fatalf("the bundle lacks %s", f)
		}
	}
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module aotcheck\n\ngo 1.19\n"), 0o644)
	var names []string
	for _, p := range strings.Split(inputs["ORDER"], " ") {
		names = append(names, p)
		x := readNpy(t, inputs[p]).Data.([]float32)
		b := make([]byte, 4*len(x))
		for i, v := range x {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		os.WriteFile(filepath.Join(dir, p+".bin"), b, 0o644)
	}
	var call []string
	for _, n := range names {
		call = append(call, `read(dir, "`+n+`")`)
	}
	// a call whose first input is one element short
	wrong := pkg + ".Run(" + strings.Join(append([]string{call[0] + "[1:]"}, call[1:]...), ", ") + ")"
	src := strings.ReplaceAll(aotMain, "WRONGCALL", wrong)
	src = strings.ReplaceAll(src, "PKG", pkg)
	src = strings.ReplaceAll(src, "ARGS", strings.Join(call, ", "))
	os.MkdirAll(filepath.Join(dir, "cmd"), 0o755)
	os.WriteFile(filepath.Join(dir, "cmd/main.go"), []byte(src), 0o644)
	return names
}

func goCmd(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func readBin(t *testing.T, path string, shape []int64) *Tensor {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return &Tensor{"f32", shape, v}
}

func TestAOTBundleFromGo(t *testing.T) {
	dir := t.TempDir()
	aotProgram(t, dir, "examples/mlp.kiln", "mlp", "cpu", []string{"B=3"}, map[string]string{
		"ORDER": "x w1 b1 w2 b2", "x": "mlp_x2.npy", "w1": "mlp_w1.npy", "b1": "mlp_b1.npy", "w2": "mlp_w2.npy",
		"b2": "mlp_b2.npy"})
	goCmd(t, dir, "build", "-o", "aotcheck", "./cmd")
	if out, err := exec.Command("gofmt", "-l", filepath.Join(dir, "mlp")).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("the generated mlp.go is not gofmt-clean: %v %s", err, out)
	}
	// neither kiln's library nor LLVM is in the program
	syms, err := exec.Command("go", "tool", "nm", filepath.Join(dir, "aotcheck")).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"kiln_model_", "exec_run", "LLVM"} {
		if strings.Contains(string(syms), bad) {
			t.Errorf("the AOT program contains %s symbols", bad)
		}
	}
	if !strings.Contains(string(syms), "mlp_run") {
		t.Error("the AOT program has no mlp_run")
	}
	if ldd, err := exec.Command("ldd", filepath.Join(dir, "aotcheck")).Output(); err == nil &&
		(strings.Contains(string(ldd), "LLVM") || strings.Contains(string(ldd), "kiln")) {
		t.Errorf("the AOT program needs:\n%s", ldd)
	}
	if out, err := exec.Command(filepath.Join(dir, "aotcheck"), dir).CombinedOutput(); err != nil {
		t.Fatalf("the AOT program: %v\n%s", err, out)
	}
	if err := closeTo(readBin(t, filepath.Join(dir, "out0.bin"), []int64{3, 10}), readNpy(t, "mlp_y2.npy"), 1e-4, 1e-6); err != nil {
		t.Error(err)
	}
}

func TestAOTCudaBundleFromGo(t *testing.T) {
	// the toolkit kiln finds (runtime/cuda_toolkit.c), wherever it is
	inc, err := exec.Command(filepath.Join(root, "build/kiln"), "env", "KILN_CUDA_INCLUDE").Output()
	if _, serr := os.Stat(filepath.Join(strings.TrimSpace(string(inc)), "cuda.h")); err != nil || serr != nil {
		t.Skip("kiln finds no CUDA toolkit (kiln env)")
	}
	dir := t.TempDir()
	order := "x c1 c1b c2 c2b f1 f1b f2 f2b f3 f3b"
	in := map[string]string{"ORDER": order}
	for _, n := range strings.Split(order, " ") {
		in[n] = "lenet_" + n + ".npy"
	}
	aotProgram(t, dir, "examples/lenet.kiln", "lenet", "cuda", []string{"N=3"}, in)
	goCmd(t, dir, "build", "-o", "aotcheck", "./cmd")
	if exec.Command("sh", "-c", "ldconfig -p | grep -q 'libcuda.so.1 '").Run() != nil {
		t.Log("built and linked; not run: no CUDA driver here")
		return
	}
	if out, err := exec.Command(filepath.Join(dir, "aotcheck"), dir).CombinedOutput(); err != nil {
		t.Fatalf("the CUDA AOT program: %v\n%s", err, out)
	}
	if err := closeTo(readBin(t, filepath.Join(dir, "out0.bin"), []int64{3, 10}), readNpy(t, "lenet_y.npy"), 1e-4, 1e-5); err != nil {
		t.Error(err)
	}
}

// A bundle whose parameters and results have every dtype (kiln_test.go's
// kinds graph), called from Go through its NAME.go: the slices' Go types and
// the values against NumPy.
func TestAOTDTypesFromGo(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "kinds.kiln")
	os.WriteFile(src, []byte(kindsSource), 0o644)
	kiln := filepath.Join(root, "build/kiln")
	if out, err := exec.Command(kiln, "aot", src, "--target=cpu", "--dim", "K=5", "-o", filepath.Join(dir, "kinds")).CombinedOutput(); err != nil {
		t.Fatalf("kiln aot: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module aotkinds\n\ngo 1.19\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "cmd"), 0o755)
	os.WriteFile(filepath.Join(dir, "cmd/main.go"), []byte(`package main

import (
	"encoding/json"
	"os"

	"aotkinds/kinds"
)

func main() {
	var in struct {
		A []float64
		B []int32
		C []int64
		D []bool
		E []uint16
		F []uint16
	}
	b, _ := os.ReadFile(os.Args[1])
	if err := json.Unmarshal(b, &in); err != nil {
		panic(err)
	}
	r0, r1, r2, r3, r4, r5, r6, err := kinds.Run(in.A, in.B, in.C, in.D, in.E, in.F)
	if err != nil {
		panic(err)
	}
	out, _ := json.Marshal([]any{r0, r1, r2, r3, r4, r5, r6})
	os.Stdout.Write(out)
}
`), 0o644)
	in := map[string]any{}
	for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
		in[strings.ToUpper(name)] = readNpy(t, "kinds_"+name+".npy").Data
	}
	b, _ := json.Marshal(in)
	os.WriteFile(filepath.Join(dir, "in.json"), b, 0o644)
	goCmd(t, dir, "build", "-o", "aotkinds", "./cmd")
	out, err := exec.Command(filepath.Join(dir, "aotkinds"), filepath.Join(dir, "in.json")).Output()
	if err != nil {
		t.Fatalf("the AOT program: %v", err)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(out, &raw); err != nil || len(raw) != 7 {
		t.Fatalf("the AOT program's output %q: %v", out, err)
	}
	tol := []float64{1e-12, 0, 0, 0, 1e-3, 0, 1e-6}
	for r := range raw {
		want := readNpy(t, fmt.Sprintf("kinds_r%d.npy", r))
		got := &Tensor{DType: want.DType, Shape: want.Shape}
		switch want.Data.(type) { // the Go type NAME.go returns for the dtype
		case []float64:
			got.Data = []float64{}
		case []float32:
			got.Data = []float32{}
		case []int32:
			got.Data = []int32{}
		case []int64:
			got.Data = []int64{}
		case []bool:
			got.Data = []bool{}
		case []uint16:
			got.Data = []uint16{}
		}
		p := reflect.New(reflect.TypeOf(got.Data))
		if err := json.Unmarshal(raw[r], p.Interface()); err != nil {
			t.Fatalf("result %d: %v", r, err)
		}
		got.Data = p.Elem().Interface()
		if err := closeTo(got, want, tol[r], 0); err != nil {
			t.Errorf("result %d (%s): %v", r, want.DType, err)
		}
	}
}
