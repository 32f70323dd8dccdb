package kiln

/*
#include "kiln.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// A Tensor is a dense array in C order.  Data is a slice of the Go type of
// DType's elements, with as many elements as the Shape says:
//
//	f32 []float32   f64 []float64   i32 []int32   i64 []int64   bool []bool
//	f16, bf16 []uint16 (the 16-bit patterns; see F16, BF16 and Float32Of)
//
// A Tensor given to Run is read where it lies, during the call; one given
// to Bind is copied.
type Tensor struct {
	DType string // "f32", "f16", "bf16", "f64", "i32", "i64", "bool"
	Shape []int64
	Data  any // []float32, []float64, []int32, []int64, []bool; []uint16 for f16/bf16
}

// dtype is KilnDType: the order of include/kiln.h.
type dtype int

var dtypeNames = [...]string{C.KILN_F32: "f32", C.KILN_F16: "f16", C.KILN_BF16: "bf16", C.KILN_F64: "f64",
	C.KILN_I32: "i32", C.KILN_I64: "i64", C.KILN_BOOL: "bool"}

// goTypes names the slice type each dtype's Data has, for messages.
var goTypes = [...]string{C.KILN_F32: "[]float32", C.KILN_F16: "[]uint16", C.KILN_BF16: "[]uint16",
	C.KILN_F64: "[]float64", C.KILN_I32: "[]int32", C.KILN_I64: "[]int64", C.KILN_BOOL: "[]bool"}

func dtypeOf(name string) (dtype, bool) {
	for i, n := range dtypeNames {
		if n == name {
			return dtype(i), true
		}
	}
	return 0, false
}

// NewTensor makes a tensor of dtype and shape over data, which is used in
// place (not copied); nil data makes a tensor of zeros.  The shape is
// copied.
func NewTensor(dtype string, shape []int64, data any) (*Tensor, error) {
	dt, ok := dtypeOf(dtype)
	if !ok {
		return nil, usageError("NewTensor: unknown dtype '%s' (dtypes: f32, f16, bf16, f64, i32, i64, bool)", dtype)
	}
	n, err := checkShape(shape, "NewTensor")
	if err != nil {
		return nil, err
	}
	if data == nil {
		data = makeData(dt, n)
	}
	t := &Tensor{DType: dtype, Shape: append([]int64{}, shape...), Data: data}
	if _, _, err := t.check("NewTensor"); err != nil {
		return nil, err
	}
	return t, nil
}

func checkShape(shape []int64, what string) (int, error) {
	n := int64(1)
	const limit = int64(1) << 48 // more elements than any machine's memory holds
	for k, d := range shape {
		if d < 0 {
			return 0, usageError("%s: dimension %d of shape %v is negative", what, k, shape)
		}
		if d > 0 && n > limit/d {
			return 0, usageError("%s: shape %v has too many elements", what, shape)
		}
		n *= d
	}
	return int(n), nil
}

// check says whether Data fits DType and Shape; returns the dtype and the
// element count.
func (t *Tensor) check(what string) (dtype, int, error) {
	dt, ok := dtypeOf(t.DType)
	if !ok {
		return 0, 0, usageError("%s: unknown dtype '%s' (dtypes: f32, f16, bf16, f64, i32, i64, bool)", what, t.DType)
	}
	n, err := checkShape(t.Shape, what)
	if err != nil {
		return 0, 0, err
	}
	have := -1
	switch d := t.Data.(type) {
	case []float32:
		if dt == C.KILN_F32 {
			have = len(d)
		}
	case []float64:
		if dt == C.KILN_F64 {
			have = len(d)
		}
	case []int32:
		if dt == C.KILN_I32 {
			have = len(d)
		}
	case []int64:
		if dt == C.KILN_I64 {
			have = len(d)
		}
	case []bool:
		if dt == C.KILN_BOOL {
			have = len(d)
		}
	case []uint16:
		if dt == C.KILN_F16 || dt == C.KILN_BF16 {
			have = len(d)
		}
	}
	if have < 0 {
		return 0, 0, usageError("%s: a %s tensor's Data is a %s, not %T", what, t.DType, goTypes[dt], t.Data)
	}
	if have != n {
		return 0, 0, usageError("%s: shape %v holds %d elements, Data has %d", what, t.Shape, n, have)
	}
	return dt, n, nil
}

// makeData allocates n zeroed elements of dt's Go type.
func makeData(dt dtype, n int) any {
	switch dt {
	case C.KILN_F32:
		return make([]float32, n)
	case C.KILN_F64:
		return make([]float64, n)
	case C.KILN_I32:
		return make([]int32, n)
	case C.KILN_I64:
		return make([]int64, n)
	case C.KILN_BOOL:
		return make([]bool, n)
	default: // f16, bf16
		return make([]uint16, n)
	}
}

// dataPtr is the first element of a checked tensor's Data (nil when empty).
func dataPtr(data any, n int) unsafe.Pointer {
	if n == 0 {
		return nil
	}
	switch d := data.(type) {
	case []float32:
		return unsafe.Pointer(&d[0])
	case []float64:
		return unsafe.Pointer(&d[0])
	case []int32:
		return unsafe.Pointer(&d[0])
	case []int64:
		return unsafe.Pointer(&d[0])
	case []bool:
		return unsafe.Pointer(&d[0])
	case []uint16:
		return unsafe.Pointer(&d[0])
	}
	panic(fmt.Sprintf("kiln: unchecked tensor data %T", data))
}

func numel(shape []int64) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}

// F16 and BF16 round float32 values to half precision (nearest even), as
// kiln does; Float32Of converts f16 or bf16 data back.
func F16(v []float32) []uint16 {
	out := make([]uint16, len(v))
	for i, x := range v {
		out[i] = uint16(C.kiln_f32_to_f16(C.float(x)))
	}
	return out
}

func BF16(v []float32) []uint16 {
	out := make([]uint16, len(v))
	for i, x := range v {
		out[i] = uint16(C.kiln_f32_to_bf16(C.float(x)))
	}
	return out
}

func Float32Of(dtype string, v []uint16) []float32 {
	out := make([]float32, len(v))
	for i, h := range v {
		if dtype == "bf16" {
			out[i] = float32(C.kiln_bf16_to_f32(C.uint16_t(h)))
		} else {
			out[i] = float32(C.kiln_f16_to_f32(C.uint16_t(h)))
		}
	}
	return out
}
