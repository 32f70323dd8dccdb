package kiln

// Benchmarks (not part of `go test`; run with -bench, or bench/go.sh for the
// table against the command line's `kiln bench`): what a Run costs beyond
// the kernels (a tiny graph), and the MLP and LeNet at batch 1 from one
// goroutine and LeNet from all of them.  Besides Go's mean (ns/op), the
// one-goroutine benchmarks report the median of the runs (median-ms), the
// figure `kiln bench` prints: on a shared machine the mean follows the
// neighbours' load more than kiln.

import (
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// timeRuns runs m b.N times on in, reporting the median run.
func timeRuns(b *testing.B, m *Model, in map[string]*Tensor) {
	runs := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := m.Run(in); err != nil {
			b.Fatal(err)
		}
		runs[i] = time.Since(t0)
	}
	b.StopTimer()
	sort.Slice(runs, func(i, j int) bool { return runs[i] < runs[j] })
	b.ReportMetric(float64(runs[len(runs)/2].Nanoseconds())/1e6, "median-ms")
}

// A graph of this source, as bench/go.sh also writes it for `kiln bench`.
const tinySource = "graph twice(x: f32[4]) -> f32[4] {\n    return x * 2.0\n}\n"

func BenchmarkRunTiny(b *testing.B) {
	m, err := Compile(tinySource, Options{Device: "cpu"})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	x, _ := NewTensor("f32", []int64{4}, []float32{1, 2, 3, 4})
	in := map[string]*Tensor{"x": x}
	if _, err := m.Run(in); err != nil { // compiled here
		b.Fatal(err)
	}
	b.ReportAllocs()
	timeRuns(b, m, in)
}

func BenchmarkMLP(b *testing.B) {
	m := mlpModel(b, Options{Device: "cpu", Dims: map[string]int64{"B": 1}})
	defer m.Close()
	x, _ := NewTensor("f32", []int64{1, 784}, nil)
	in := map[string]*Tensor{"x": x}
	if _, err := m.Run(in); err != nil {
		b.Fatal(err)
	}
	timeRuns(b, m, in)
}

func lenetBench(b *testing.B) (*Model, map[string]*Tensor) {
	m := mustLoad(b, filepath.Join(root, "examples/lenet.kiln"), Options{Device: "cpu", Dims: map[string]int64{"N": 1}})
	if err := m.LoadWeights(data("lenet.safetensors")); err != nil {
		b.Fatal(err)
	}
	x, _ := NewTensor("f32", []int64{1, 1, 28, 28}, nil)
	in := map[string]*Tensor{"x": x}
	if _, err := m.Run(in); err != nil { // compiled here
		b.Fatal(err)
	}
	return m, in
}

func BenchmarkLeNet(b *testing.B) {
	m, in := lenetBench(b)
	defer m.Close()
	timeRuns(b, m, in)
}

func BenchmarkLeNetParallel(b *testing.B) {
	m, in := lenetBench(b)
	defer m.Close()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Run(in); err != nil {
				b.Fatal(err)
			}
		}
	})
}
