package kiln

// The package against NumPy (tests/gen/go_data.py): the examples' graphs,
// every dtype, many goroutines on one model, results that share no memory,
// every error path, use after Close, and no leak over many cycles.  Run
// with -race and GODEBUG=cgocheck=1 (tests/go/run.sh).

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

func mlpModel(t testing.TB, opt Options) *Model {
	m := mustLoad(t, filepath.Join(root, "examples/mlp.kiln"), opt)
	if err := m.LoadWeights(data("mlp.safetensors")); err != nil {
		t.Fatal(err)
	}
	return m
}

// The examples' graphs on every device here, against NumPy.
func TestAgainstNumPy(t *testing.T) {
	for _, device := range []string{"cpu", "ref", "kir", "cuda-emu"} {
		t.Run("mlp/"+device, func(t *testing.T) {
			m := mlpModel(t, Options{Device: device})
			defer m.Close()
			if m.Device() != device || m.Graph() != "mlp" {
				t.Errorf("device %q graph %q", m.Device(), m.Graph())
			}
			for k := 0; k < 8; k++ { // batch sizes 1..4: one compilation each, on first use
				out, err := m.Run(map[string]*Tensor{"x": readNpy(t, fmt.Sprintf("mlp_x%d.npy", k))})
				if err != nil {
					t.Fatal(err)
				}
				if err := closeTo(out[0], readNpy(t, fmt.Sprintf("mlp_y%d.npy", k)), 1e-4, 1e-6); err != nil {
					t.Errorf("input %d: %v", k, err)
				}
			}
		})
	}
	t.Run("lenet", func(t *testing.T) {
		m := mustLoad(t, filepath.Join(root, "examples/lenet.kiln"), Options{Dims: map[string]int64{"N": 3}})
		defer m.Close()
		if err := m.LoadWeights(data("lenet.safetensors")); err != nil {
			t.Fatal(err)
		}
		out, err := m.Run(map[string]*Tensor{"x": readNpy(t, "lenet_x.npy")})
		if err != nil {
			t.Fatal(err)
		}
		if err := closeTo(out[0], readNpy(t, "lenet_y.npy"), 1e-4, 1e-5); err != nil {
			t.Error(err)
		}
	})
}

// The ONNX importer's LeNet (tests/onnx/lenet.onnx: a symbolic batch,
// weights in the file), when it is there.
func TestONNX(t *testing.T) {
	path := filepath.Join(root, "tests/onnx/lenet.onnx")
	if _, err := os.Stat(data("onnx_lenet_x.npy")); err != nil {
		t.Skip("no tests/onnx/lenet.onnx")
	}
	for _, device := range []string{"cpu", "ref"} {
		m := mustLoad(t, path, Options{Device: device})
		p := m.Params()
		if len(p) != 1 || p[0].Bound || len(p[0].Shape) != 4 {
			t.Fatalf("params of the ONNX LeNet: %+v", p)
		}
		x := readNpy(t, "onnx_lenet_x.npy")
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := m.Run(map[string]*Tensor{p[0].Name: x})
				if err == nil {
					err = closeTo(out[0], readNpy(t, "onnx_lenet_y.npy"), 1e-4, 1e-6)
				}
				if err != nil {
					t.Errorf("%s: %v", device, err)
				}
			}()
		}
		wg.Wait()
		m.Close()
	}
	_, err := Load(path, Options{Graph: "nope"})
	asError(t, "ONNX graph name", err, StatusUsage, "no graph named 'nope'; it defines: lenet")
	m := mustLoad(t, path, Options{Graph: "lenet", Dims: map[string]int64{"batch": 2}})
	defer m.Close()
	if p, r := m.Params(), m.Results(); p[0].Type != "f32[batch, 1, 28, 28]" || m.Graph() != "lenet" ||
		len(r) != 1 || r[0].Name != "probs" || r[0].Type != "f32[batch, 10]" {
		t.Errorf("the ONNX LeNet: input %+v, result %+v, graph %q", p[0], r, m.Graph())
	}
}

// More slices than one C call takes (glue.h): every LeNet weight passed as
// an input, from several goroutines, against NumPy.
func TestManyInputs(t *testing.T) {
	m := mustLoad(t, filepath.Join(root, "examples/lenet.kiln"), Options{})
	defer m.Close()
	in := map[string]*Tensor{"x": readNpy(t, "lenet_x.npy")}
	for _, p := range m.Params()[1:] {
		in[p.Name] = readNpy(t, "lenet_"+p.Name+".npy")
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := m.Run(in)
			if err == nil {
				err = closeTo(out[0], readNpy(t, "lenet_y.npy"), 1e-4, 1e-5)
			}
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

const kindsSource = `# every dtype through the boundary
graph kinds(a: f64[K], b: i32[K], c: i64[K], d: bool[K], e: f16[K], f: bf16[K]) -> (f64[K], i32[K], i64[K], bool[K], f16[K], bf16[K], f32[K]) {
    return a * a + 1.0, b * 3 - b, c * c, not d, e * e, f + f, cast(e, f32) + cast(f, f32)
}
`

func TestDTypes(t *testing.T) {
	for _, device := range []string{"cpu", "ref"} {
		m, err := Compile(kindsSource, Options{Device: device})
		if err != nil {
			t.Fatal(err)
		}
		in := map[string]*Tensor{}
		for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
			in[name] = readNpy(t, "kinds_"+name+".npy")
		}
		out, err := m.Run(in)
		if err != nil {
			t.Fatal(err)
		}
		tol := []float64{1e-12, 0, 0, 0, 1e-3, 0, 1e-6}
		for r := range out {
			if err := closeTo(out[r], readNpy(t, fmt.Sprintf("kinds_r%d.npy", r)), tol[r], 0); err != nil {
				t.Errorf("%s: result %d (%s): %v", device, r, m.Results()[r].Type, err)
			}
		}
		m.Close()
	}
}

// An f32 value bound to f16 and bf16 parameters is converted once.
func TestBindConverts(t *testing.T) {
	m, err := Compile("graph h(x: f32[2], a: f16[2], b: bf16[2]) -> f32[2] {\n"+
		"    return x + cast(a, f32) + cast(b, f32)\n}\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	half, _ := NewTensor("f32", []int64{2}, []float32{0.5, 1.0009765625}) // exact in f16, not in bf16
	if err := m.Bind("a", half); err != nil {
		t.Fatal(err)
	}
	if err := m.Bind("b", half); err != nil {
		t.Fatal(err)
	}
	x, _ := NewTensor("f32", []int64{2}, []float32{1, 2})
	out, err := m.Run(map[string]*Tensor{"x": x})
	if err != nil {
		t.Fatal(err)
	}
	// bf16 keeps 8 bits: 1.0009765625 rounds to 1
	if got := out[0].Data.([]float32); got[0] != 2 || got[1] != 2+1.0009765625+1 {
		t.Errorf("got %v", got)
	}
}

// Many goroutines on one model: batch sizes vary, so compilations for new
// sizes happen while other runs are in flight.
func TestConcurrentRuns(t *testing.T) {
	m := mlpModel(t, Options{})
	defer m.Close()
	inputs := make([]*Tensor, 8)
	wants := make([]*Tensor, 8)
	for k := range inputs {
		inputs[k] = readNpy(t, fmt.Sprintf("mlp_x%d.npy", k))
		wants[k] = readNpy(t, fmt.Sprintf("mlp_y%d.npy", k))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 12; i++ {
				k := (g + i) % 8
				out, err := m.Run(map[string]*Tensor{"x": inputs[k]})
				if err == nil {
					err = closeTo(out[0], wants[k], 1e-4, 1e-6)
				}
				if err != nil {
					errs <- fmt.Errorf("goroutine %d run %d: %v", g, i, err)
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Bind while other goroutines run: every run sees one binding whole, the
// old or the new, never a mix; Params reports the binding meanwhile.
func TestBindWhileRunning(t *testing.T) {
	m, err := Compile("graph add(x: f32[1024], w: f32[1024]) -> f32[1024] {\n    return x + w\n}\n", Options{Device: "cpu"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	values := [2][]float32{make([]float32, 1024), make([]float32, 1024)}
	for i := range values[0] {
		values[0][i], values[1][i] = float32(i), float32(1000000+i)
	}
	bind := func(k int) {
		w, _ := NewTensor("f32", []int64{1024}, values[k])
		if err := m.Bind("w", w); err != nil {
			t.Error(err)
		}
	}
	bind(0)
	x, _ := NewTensor("f32", []int64{1024}, nil)
	in := map[string]*Tensor{"x": x}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var runs int64
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				out, err := m.Run(in)
				if err != nil {
					t.Error(err)
					return
				}
				got := out[0].Data.([]float32)
				k := 0
				if got[0] != 0 {
					k = 1
				}
				for i, v := range got {
					if v != values[k][i] {
						t.Errorf("a run saw a mix of two bindings: element %d is %g", i, v)
						return
					}
				}
				if !m.Params()[1].Bound {
					t.Error("w not reported bound")
					return
				}
				atomic.AddInt64(&runs, 1)
			}
		}()
	}
	for i := 1; i <= 40 || atomic.LoadInt64(&runs) < 300; i++ {
		bind(i % 2)
		runtime.Gosched()
	}
	close(stop)
	wg.Wait()
	t.Logf("%d runs", runs)
}

// Results never share memory with the weights, the inputs or another run.
func TestResultsDoNotAlias(t *testing.T) {
	m, err := Compile("graph echo(x: f32[3], w: f32[3]) -> (f32[3], f32[3], f32[3]) {\n    return w, x, x + w\n}\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	wdata := []float32{1, 2, 3}
	w, _ := NewTensor("f32", []int64{3}, wdata)
	if err := m.Bind("w", w); err != nil {
		t.Fatal(err)
	}
	wdata[0] = 100 // Bind copied: the model does not see this
	x, _ := NewTensor("f32", []int64{3}, []float32{10, 20, 30})
	a, err := m.Run(map[string]*Tensor{"x": x})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := m.Run(map[string]*Tensor{"x": x})
	a[0].Data.([]float32)[1] = -1 // a result that is the weight: a copy
	a[1].Data.([]float32)[1] = -1 // a result that is the input: a copy
	c, _ := m.Run(map[string]*Tensor{"x": x})
	if got := fmt.Sprint(c[0].Data, c[1].Data, c[2].Data, x.Data); got != "[1 2 3] [10 20 30] [11 22 33] [10 20 30]" {
		t.Errorf("results after writing into earlier ones: %s", got)
	}
	for r := range a {
		if &a[r].Data.([]float32)[0] == &b[r].Data.([]float32)[0] {
			t.Errorf("result %d of two runs shares memory", r)
		}
	}
	if &a[1].Data.([]float32)[0] == &x.Data.([]float32)[0] {
		t.Error("a result shares the input's memory")
	}
}

// Every error path returns an *Error with the status the command line
// would exit with, and the place for diagnostics.
func TestErrors(t *testing.T) {
	_, err := Compile("graph g(x: f32[4]) -> f32[4] {\n    return x + y\n}\n", Options{})
	if e := asError(t, "undefined name", err, StatusInput, "<source>:2:16: error:", "^"); e != nil {
		if e.File != "<source>" || e.Line != 2 || e.Col != 16 {
			t.Errorf("undefined name: place %s:%d:%d", e.File, e.Line, e.Col)
		}
	}
	_, err = Compile("graph g(x: f32[4]) -> f32[4] {\n    return x +\n}\n", Options{})
	asError(t, "syntax error", err, StatusInput, "<source>:2:")
	_, err = Compile("", Options{})
	asError(t, "empty source", err, StatusInput, "defines no graph")
	_, err = Compile("graph g(x: f32[4]) -> f32[4] {\x00}", Options{})
	asError(t, "NUL byte", err, StatusInput, "NUL")
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.kiln")
	os.WriteFile(bad, []byte("graph g(x: f32[2]) -> f32[3] {\n    return x\n}\n"), 0o644)
	_, err = Load(bad, Options{})
	if e := asError(t, "a file with a type error", err, StatusInput, bad+":"); e != nil && (e.File != bad || e.Line == 0) {
		t.Errorf("type error: place %s:%d:%d", e.File, e.Line, e.Col)
	}
	_, err = Load(filepath.Join(dir, "missing.kiln"), Options{})
	if e := asError(t, "a missing file", err, StatusUsage, "missing.kiln"); e != nil && e.File == "" {
		t.Error("a missing file: no File")
	}
	mlp := filepath.Join(root, "examples/mlp.kiln")
	_, err = Load(mlp, Options{Device: "tpu"})
	asError(t, "unknown device", err, StatusUsage, "unknown device 'tpu'", "cpu")
	_, err = Load(mlp, Options{Graph: "nope"})
	asError(t, "unknown graph", err, StatusUsage, "no graph named 'nope'")
	_, err = Load(mlp, Options{Precision: "f8"})
	asError(t, "bad precision", err, StatusUsage, "f32, f16, bf16 or auto")
	_, err = Load(mlp, Options{Dims: map[string]int64{"Q": 2}})
	asError(t, "unknown dimension", err, StatusUsage, "no dimension 'Q'", "B")
	_, err = Load(mlp, Options{Dims: map[string]int64{"B": 0}})
	asError(t, "zero size", err, StatusUsage, "positive")
	if _, err = Load(mlp, Options{Device: "cuda"}); err != nil { // no GPU here: the device is missing
		asError(t, "cuda without a GPU", err, StatusDevice, "cuda")
	}

	m := mustLoad(t, mlp, Options{Dims: map[string]int64{"B": 2}})
	defer m.Close()
	err = m.LoadWeights(filepath.Join(dir, "none.safetensors"))
	if e := asError(t, "missing weights", err, StatusInput, "none.safetensors"); e != nil && e.File == "" {
		t.Error("missing weights: no File")
	}
	err = m.LoadWeights(data("lenet.safetensors"))
	asError(t, "weights of another graph", err, StatusInput, "no tensor of the file names a parameter")
	w1, _ := NewTensor("f32", []int64{256, 784}, nil)
	asError(t, "Bind transposed", m.Bind("w1", w1), StatusUsage, "parameter 'w1' is f32[784, 256]")
	asError(t, "Bind unknown", m.Bind("w9", w1), StatusUsage, "did you mean 'w1'")
	asError(t, "Bind nil", m.Bind("w1", nil), StatusUsage, "nil")
	asError(t, "Bind mismatched data", m.Bind("w1", &Tensor{"f32", []int64{784, 256}, []float64{1}}), StatusUsage,
		"[]float32, not []float64")
	asError(t, "Bind short data", m.Bind("b1", &Tensor{"f32", []int64{256}, []float32{1}}), StatusUsage,
		"256 elements, Data has 1")
	x, _ := NewTensor("f32", []int64{2, 784}, nil)
	_, err = m.Run(map[string]*Tensor{"x": x})
	asError(t, "w1 unbound", err, StatusUsage, "input 'w1'", "missing")
	if err := m.LoadWeights(data("mlp.safetensors")); err != nil {
		t.Fatal(err)
	}
	_, err = m.Run(map[string]*Tensor{"x": x, "y": x})
	asError(t, "unknown input", err, StatusUsage, "no parameter 'y'")
	_, err = m.Run(map[string]*Tensor{"x": x, "w1": w1})
	asError(t, "bound parameter as input", err, StatusUsage, "'w1' is bound")
	_, err = m.Run(map[string]*Tensor{})
	asError(t, "missing input", err, StatusUsage, "input 'x'", "missing")
	_, err = m.Run(map[string]*Tensor{"x": nil})
	asError(t, "nil input", err, StatusUsage, "nil")
	x3, _ := NewTensor("f32", []int64{3, 784}, nil)
	_, err = m.Run(map[string]*Tensor{"x": x3})
	asError(t, "batch 3 for B=2", err, StatusUsage, "B is 2 (fixed by the options), not 3")
	xi, _ := NewTensor("i32", []int64{2, 784}, nil)
	_, err = m.Run(map[string]*Tensor{"x": xi})
	asError(t, "i32 input", err, StatusUsage, "i32[2, 784]", "f32[B, 784]")
	_, err = m.Run(map[string]*Tensor{"x": {"f32", []int64{2, 784}, []float32{1, 2}}})
	asError(t, "short input", err, StatusUsage, "1568 elements, Data has 2")
	_, err = m.Run(map[string]*Tensor{"x": {"f8", []int64{2}, []float32{1, 2}}})
	asError(t, "unknown dtype", err, StatusUsage, "unknown dtype 'f8'")

	_, err = NewTensor("f8", []int64{2}, nil)
	asError(t, "NewTensor dtype", err, StatusUsage, "unknown dtype")
	_, err = NewTensor("f32", []int64{2, -1}, nil)
	asError(t, "NewTensor negative", err, StatusUsage, "negative")
	_, err = NewTensor("i64", []int64{2}, []int32{1, 2})
	asError(t, "NewTensor type", err, StatusUsage, "[]int64, not []int32")
	_, err = NewTensor("f32", []int64{1 << 40, 1 << 40}, nil)
	asError(t, "NewTensor huge", err, StatusUsage, "too many elements")
}

func TestUseAfterClose(t *testing.T) {
	m := mlpModel(t, Options{Device: "ref"})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	x, _ := NewTensor("f32", []int64{1, 784}, nil)
	_, err := m.Run(map[string]*Tensor{"x": x})
	asError(t, "Run", err, StatusUsage, "closed")
	asError(t, "Bind", m.Bind("w1", x), StatusUsage, "closed")
	asError(t, "LoadWeights", m.LoadWeights(data("mlp.safetensors")), StatusUsage, "closed")
	asError(t, "Close", m.Close(), StatusUsage, "closed")
}

// Close waits for the runs in flight; later runs fail cleanly.
func TestCloseWhileRunning(t *testing.T) {
	m := mlpModel(t, Options{Dims: map[string]int64{"B": 1}})
	x := readNpy(t, "mlp_x0.npy")
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, closed := 0, 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				_, err := m.Run(map[string]*Tensor{"x": x})
				mu.Lock()
				if err == nil {
					ok++
				} else if e, is := err.(*Error); is && e.Status == StatusUsage && strings.Contains(e.Message, "closed") {
					closed++
				} else {
					t.Errorf("run: %v", err)
				}
				mu.Unlock()
			}
		}()
	}
	runtime.Gosched()
	if err := m.Close(); err != nil {
		t.Error(err)
	}
	wg.Wait()
	if ok+closed != 400 {
		t.Errorf("%d runs ok, %d closed, of 400", ok, closed)
	}
}

// The memory and threads of the process come back after many cycles.
func TestNoLeak(t *testing.T) {
	x := readNpy(t, "mlp_x1.npy")
	cycle := func(device string) {
		m := mlpModel(t, Options{Device: device})
		if _, err := m.Run(map[string]*Tensor{"x": x}); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	measure := func() (rss, threads int) {
		runtime.GC()
		debug.FreeOSMemory()
		status, _ := os.ReadFile("/proc/self/status")
		for _, line := range strings.Split(string(status), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "VmRSS:" {
				rss, _ = strconv.Atoi(f[1])
			} else if len(f) >= 2 && f[0] == "Threads:" {
				threads, _ = strconv.Atoi(f[1])
			}
		}
		return
	}
	for i := 0; i < 3; i++ { // warm up: allocator pools, LLVM's one-time state
		cycle("cpu")
		cycle("ref")
	}
	rss0, threads0 := measure()
	for i := 0; i < 300; i++ {
		cycle("ref")
	}
	for i := 0; i < 8; i++ {
		cycle("cpu") // compiled code, JIT and thread pool
	}
	rss1, threads1 := measure()
	t.Logf("308 cycles: RSS %d -> %d kB, threads %d -> %d", rss0, rss1, threads0, threads1)
	// one leaked model holds over 1 MB of weights: 308 of them would be 300 MB
	if rss1-rss0 > 16*1024 {
		t.Errorf("RSS grew by %d kB over 308 load/run/close cycles", rss1-rss0)
	}
	if threads1 > threads0+2 {
		t.Errorf("threads grew from %d to %d", threads0, threads1)
	}
}

func TestInfo(t *testing.T) {
	m := mustLoad(t, filepath.Join(root, "examples/lenet.kiln"), Options{Device: "ref"})
	defer m.Close()
	p := m.Params()
	if len(p) != 11 || p[0].Name != "x" || p[0].Type != "f32[N, 1, 28, 28]" || fmt.Sprint(p[0].Shape) != "[-1 1 28 28]" || p[0].Bound {
		t.Errorf("params: %+v", p[0])
	}
	if r := m.Results(); len(r) != 1 || r[0].Name != "out0" || r[0].Type != "f32[N, 10]" {
		t.Errorf("results: %+v", r)
	}
	if err := m.LoadWeights(data("lenet.safetensors")); err != nil {
		t.Fatal(err)
	}
	if p := m.Params(); p[0].Bound || !p[1].Bound || !p[10].Bound {
		t.Error("bound flags after LoadWeights")
	}
	p[0].Shape[1] = 99 // a copy
	if m.Params()[0].Shape[1] != 1 {
		t.Error("Params returned the model's own slice")
	}
}

// The f16 and bf16 helpers round as kiln does.
func TestHalf(t *testing.T) {
	v := []float32{1, 1.0009765625, 65504, 1e-8, -2.5}
	back := Float32Of("f16", F16(v))
	if back[0] != 1 || back[1] != 1.0009765625 || back[2] != 65504 || back[4] != -2.5 {
		t.Errorf("f16 round trip: %v", back)
	}
	if b := Float32Of("bf16", BF16([]float32{1.00390625, 3})); b[0] != 1 || b[1] != 3 {
		t.Errorf("bf16: %v", b) // 1 + 2^-8 is a tie: to even
	}
	if unsafe.Sizeof(true) != 1 {
		t.Fatal("a Go bool is not one byte: []bool cannot be kiln's bool")
	}
}
