// Package kiln runs tensor graphs compiled by kiln from Go programs: a .kiln
// file, kiln source text or an ONNX model is compiled once for a device,
// its weights are bound once, and Run may then be called from as many
// goroutines at once as the program likes.
//
//	m, err := kiln.Load("examples/lenet.kiln", kiln.Options{Dims: map[string]int64{"N": 1}})
//	if err != nil { ... }
//	defer m.Close()
//	if err := m.LoadWeights("lenet.safetensors"); err != nil { ... }
//	x, _ := kiln.NewTensor("f32", []int64{1, 1, 28, 28}, pixels)
//	out, err := m.Run(map[string]*kiln.Tensor{"x": x})
//	logits := out[0].Data.([]float32)
//
// The package links the kiln library (build/libkiln.a) through cgo: run
// `make` in the kiln tree first.  Every failing call returns an *Error.
//
// Memory: Run reads each input's slice where it lies, for the duration of
// the call, and the results land in slices that Run allocates in Go; Bind
// and LoadWeights copy a value into the model once, and every later Run uses
// that copy.  No Go pointer is kept by C after a call returns (cgo's rules,
// checked by the tests under GODEBUG=cgocheck=1; see glue.h for how a run
// hands several slices to C at once).
package kiln

/*
#cgo CFLAGS: -I${SRCDIR}/../include
#include <stdlib.h>
#include "glue.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"runtime/cgo"
	"sort"
	"strings"
	"sync"
	"unsafe"
)

// Options choose what Load and Compile compile, and for which device.
type Options struct {
	Graph     string           // "" = the first graph of the file
	Device    string           // "" = the default device; "ref", "cpu", "cuda", "cuda-emu"
	Dims      map[string]int64 // binds symbolic dimensions
	Precision string           // "" = "f32"; "f16", "bf16", "auto"
}

// A Model is one graph compiled for one device, with its bound weights.
// Its methods may be called from several goroutines at once: runs proceed
// in parallel, sharing the compiled code and the weights read only; Bind,
// LoadWeights and Close wait for the runs in progress.
//
// Symbolic dimensions not fixed by Options.Dims (or by a bound parameter's
// shape) are taken from each Run's inputs: the graph is compiled once for
// each set of sizes met, on first use.
type Model struct {
	mu     sync.RWMutex // Run holds it shared; Bind, LoadWeights and Close exclusively
	c      *C.KilnModel // nil once closed
	graph  string
	device string
	params []TensorInfo
	result []TensorInfo
	index  map[string]int
}

// TensorInfo describes a parameter or a result of a model: Shape has -1 for
// a symbolic dimension, and Type spells the declared type ("f32[N, 10]").
type TensorInfo struct {
	Name  string // results: an ONNX model's output names, else "out0", "out1", ...
	DType string
	Shape []int64
	Type  string
	Bound bool // parameters: bound by Bind or LoadWeights, so not a Run input
}

// Load compiles the graph of a .kiln file or an ONNX model (recognised by
// its content).
func Load(path string, opt Options) (*Model, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return open(opt, func(o *C.KilnModelOptions, e *C.KilnError) *C.KilnModel {
		return C.kiln_model_load(cpath, o, e)
	})
}

// Compile compiles kiln source text; its diagnostics call it "<source>".
func Compile(source string, opt Options) (*Model, error) {
	csrc := C.CString(source)
	defer C.free(unsafe.Pointer(csrc))
	if strings.IndexByte(source, 0) >= 0 {
		return nil, &Error{Status: StatusInput, File: "<source>",
			Message: "kiln: <source>: the source text contains a NUL byte; kiln programs are UTF-8 text"}
	}
	return open(opt, func(o *C.KilnModelOptions, e *C.KilnError) *C.KilnModel {
		return C.kiln_model_compile(csrc, o, e)
	})
}

// open converts the options to C (C memory only), opens the model and reads
// its description.
func open(opt Options, openC func(*C.KilnModelOptions, *C.KilnError) *C.KilnModel) (*Model, error) {
	var strs []*C.char
	cstr := func(s string) *C.char {
		if s == "" {
			return nil
		}
		p := C.CString(s)
		strs = append(strs, p)
		return p
	}
	defer func() {
		for _, p := range strs {
			C.free(unsafe.Pointer(p))
		}
	}()
	copt := C.KilnModelOptions{graph: cstr(opt.Graph), device: cstr(opt.Device), precision: cstr(opt.Precision)}
	if n := len(opt.Dims); n > 0 {
		names := make([]string, 0, n)
		for name := range opt.Dims {
			names = append(names, name)
		}
		sort.Strings(names) // the same messages every time
		dims := unsafe.Slice((*C.KilnDim)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.KilnDim{})))), n)
		defer C.free(unsafe.Pointer(&dims[0]))
		for i, name := range names {
			dims[i] = C.KilnDim{name: cstr(name), size: C.int64_t(opt.Dims[name])}
			if name == "" {
				dims[i].name = cstr(" ") // refused by the library with its own message
			}
		}
		copt.dims = &dims[0]
		copt.ndims = C.int(n)
	}
	var cerr C.KilnError
	cm := openC(&copt, &cerr)
	if cm == nil {
		return nil, takeError(&cerr)
	}
	m := &Model{c: cm, index: map[string]int{}}
	m.graph = C.GoString(C.kiln_model_graph(cm))
	m.device = C.GoString(C.kiln_model_device(cm))
	np, nr := int(C.kiln_model_num_params(cm)), int(C.kiln_model_num_results(cm))
	for i := 0; i < np+nr; i++ {
		var info C.KilnTensorInfo
		if i < np {
			C.kiln_model_param_info(cm, C.int(i), &info)
		} else {
			C.kiln_model_result_info(cm, C.int(i-np), &info)
		}
		ti := TensorInfo{Name: C.GoString(info.name), DType: dtypeNames[info.dtype], Type: C.GoString(info._type)}
		ti.Shape = append([]int64{}, unsafe.Slice((*int64)(unsafe.Pointer(info.shape)), int(info.rank))...)
		if i < np {
			m.index[ti.Name] = i
			m.params = append(m.params, ti)
		} else {
			m.result = append(m.result, ti)
		}
	}
	// A model that is dropped without Close is freed by the garbage collector.
	runtime.SetFinalizer(m, func(m *Model) { m.Close() })
	return m, nil
}

// Graph is the name of the graph the model runs.
func (m *Model) Graph() string { return m.graph }

// Device is the device the model runs on ("cpu", "cuda", ...).
func (m *Model) Device() string { return m.device }

// Params describes the graph's parameters, in order.
func (m *Model) Params() []TensorInfo {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]TensorInfo, len(m.params))
	for i, p := range m.params {
		out[i] = p
		out[i].Shape = append([]int64{}, p.Shape...)
	}
	return out
}

// Results describes the graph's results, in order.
func (m *Model) Results() []TensorInfo {
	out := make([]TensorInfo, len(m.result))
	for i, r := range m.result {
		out[i] = r
		out[i].Shape = append([]int64{}, r.Shape...)
	}
	return out
}

// LoadWeights binds every parameter named in a .safetensors file (tensors
// that name no parameter are left alone; a file that binds none is an
// error).  All or nothing: a tensor that does not fit binds nothing.
func (m *Model) LoadWeights(path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		return errClosed()
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var cerr C.KilnError
	if C.kiln_model_load_weights(m.c, cpath, &cerr) != C.KILN_OK {
		return takeError(&cerr)
	}
	m.refreshBound()
	return nil
}

// Bind binds parameter name to a copy of t's value for every later Run.
// t must have the parameter's dtype (f32 is also taken for an f16 or bf16
// parameter) and shape.  Binding again replaces the value.
func (m *Model) Bind(name string, t *Tensor) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		return errClosed()
	}
	if t == nil {
		return usageError("Bind(%q): the tensor is nil", name)
	}
	dt, n, err := t.check(fmt.Sprintf("Bind(%q)", name))
	if err != nil {
		return err
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var cerr C.KilnError
	// shape and data are Go memory without Go pointers, read during the call
	if C.kgo_bind(m.c, cname, C.int(dt), C.int(len(t.Shape)), shapePtr(t.Shape), dataPtr(t.Data, n), &cerr) != C.KILN_OK {
		return takeError(&cerr)
	}
	runtime.KeepAlive(t)
	m.refreshBound()
	return nil
}

func (m *Model) refreshBound() {
	for i := range m.params {
		m.params[i].Bound = bool(C.kiln_model_param_bound(m.c, C.int(i)))
	}
}

// Run runs the graph once.  inputs maps every unbound parameter's name to
// its value; bound parameters are not inputs.  The results are new tensors,
// in the graph's order, sharing memory with nothing else.
func (m *Model) Run(inputs map[string]*Tensor) ([]*Tensor, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.c == nil {
		return nil, errClosed()
	}
	np, nr := len(m.params), len(m.result)
	byIndex := make([]*Tensor, np)
	counts := make([]int, np)
	dtypes := make([]dtype, np)
	total := 0
	for name, t := range inputs {
		i, ok := m.index[name]
		if !ok {
			return nil, m.noParam(name)
		}
		if m.params[i].Bound {
			return nil, usageError("parameter '%s' is bound (Bind or LoadWeights): it is not an input of Run", name)
		}
		if t == nil {
			return nil, usageError("input '%s' is nil", name)
		}
		dt, n, err := t.check(fmt.Sprintf("input '%s'", name))
		if err != nil {
			return nil, err
		}
		byIndex[i], counts[i], dtypes[i] = t, n, dt
		total += len(t.Shape)
	}
	call := C.kgo_call_new(m.c, C.int(np), C.int(nr), C.int64_t(total))
	if call == nil {
		return nil, &Error{Status: StatusDevice, Message: "kiln: out of host memory for a run"}
	}
	defer C.kgo_call_free(call)
	at := 0
	for i, t := range byIndex {
		if t != nil {
			C.kgo_call_input(call, C.int(i), C.int(dtypes[i]), C.int(len(t.Shape)), shapePtr(t.Shape), C.int64_t(at))
			at += len(t.Shape)
		}
	}
	if C.kgo_call_plan(call) != C.KILN_OK {
		return nil, takeError(&call.err)
	}
	// the results, allocated in Go, with the types the plan gave
	chain := &pinChain{call: call}
	outs := make([]*Tensor, nr)
	cout := unsafe.Slice(call.out, nr)
	for r := range outs {
		shape := append([]int64{}, unsafe.Slice((*int64)(unsafe.Pointer(cout[r].shape)), int(cout[r].rank))...)
		n := numel(shape)
		outs[r] = &Tensor{DType: dtypeNames[cout[r].dtype], Shape: shape, Data: makeData(dtype(cout[r].dtype), n)}
		chain.add(np+r, dataPtr(outs[r].Data, n))
	}
	for i, t := range byIndex {
		if t != nil {
			chain.add(i, dataPtr(t.Data, counts[i]))
		}
	}
	st := chain.run()
	runtime.KeepAlive(byIndex)
	runtime.KeepAlive(outs)
	if st != C.KILN_OK {
		return nil, takeError(&call.err)
	}
	return outs, nil
}

// pinChain hands a run's slices to C one nested call at a time (glue.h).
type pinChain struct {
	call  *C.KgoCall
	slots []int
	ptrs  []unsafe.Pointer
	next_ int
}

func (p *pinChain) add(slot int, ptr unsafe.Pointer) {
	if ptr != nil { // an empty tensor has no memory to hand over
		p.slots = append(p.slots, slot)
		p.ptrs = append(p.ptrs, ptr)
	}
}

// run hands every slice over and runs the model: in one call when they are
// few, else one nested call per slice.
func (p *pinChain) run() C.int {
	if len(p.ptrs) <= C.KGO_DIRECT {
		var slots [C.KGO_DIRECT]C.int
		var ptrs [C.KGO_DIRECT]unsafe.Pointer
		for i := range slots {
			slots[i] = -1
			if i < len(p.ptrs) {
				slots[i], ptrs[i] = C.int(p.slots[i]), p.ptrs[i]
			}
		}
		return C.kgo_run_direct(p.call, &slots[0], ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], ptrs[5], ptrs[6], ptrs[7])
	}
	h := cgo.NewHandle(p)
	defer h.Delete()
	return p.next(h)
}

// next pins the next slice (C calls back for the one after), or runs the
// model once every slice is pinned.
func (p *pinChain) next(h cgo.Handle) C.int {
	if p.next_ == len(p.ptrs) {
		return C.kgo_call_run(p.call)
	}
	i := p.next_
	p.next_++
	return C.kgo_pin(p.call, C.int(p.slots[i]), p.ptrs[i], C.uintptr_t(h))
}

//export goKilnPinNext
func goKilnPinNext(h C.uintptr_t) C.int {
	return cgo.Handle(h).Value().(*pinChain).next(cgo.Handle(h))
}

// Close frees everything the model holds, once the runs in progress end.
// Every later call on the model returns an *Error (Close included).
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		return errClosed()
	}
	C.kiln_model_free(m.c)
	m.c = nil
	runtime.SetFinalizer(m, nil)
	return nil
}

func (m *Model) noParam(name string) error {
	names := make([]string, len(m.params))
	for i, p := range m.params {
		names[i] = p.Name
	}
	return usageError("graph '%s' has no parameter '%s' (its parameters: %s)", m.graph, name, strings.Join(names, ", "))
}

// shapePtr and dataPtr: the first element of a slice, for the duration of
// a C call (nil for an empty one).
func shapePtr(shape []int64) *C.int64_t {
	if len(shape) == 0 {
		return nil
	}
	return (*C.int64_t)(unsafe.Pointer(&shape[0]))
}
