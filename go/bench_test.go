package kiln

// Benchmarks (not part of `go test`; run with -bench): what a Run costs
// beyond the kernels (a tiny graph), and LeNet at batch 1 from one goroutine
// and from all of them.

import (
	"path/filepath"
	"testing"
)

func BenchmarkRunTiny(b *testing.B) {
	m, err := Compile("graph twice(x: f32[4]) -> f32[4] {\n    return x * 2.0\n}\n", Options{Device: "cpu"})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	x, _ := NewTensor("f32", []int64{4}, []float32{1, 2, 3, 4})
	in := map[string]*Tensor{"x": x}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := m.Run(in); err != nil {
			b.Fatal(err)
		}
	}
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
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := m.Run(in); err != nil {
			b.Fatal(err)
		}
	}
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
