package kiln

/*
#include <stdlib.h>
#include "kiln.h"
*/
import "C"

import "fmt"

// Error is what every failing call returns (as error).
type Error struct {
	Status    int    // 1 the input is wrong, 2 misuse, 3 device or environment
	File      string // where a diagnostic points, else ""
	Line, Col int
	Message   string // the diagnostic as the command line prints it
}

// The values of Error.Status: the exit statuses of the kiln command.
const (
	StatusInput  = 1 // the program, a model or a data file is wrong
	StatusUsage  = 2 // the API was misused: a wrong name, shape or dtype, a closed model
	StatusDevice = 3 // the device or the environment failed: no driver, out of memory
)

func (e *Error) Error() string { return e.Message }

// takeError converts a C error and frees its strings.
func takeError(ce *C.KilnError) *Error {
	e := &Error{Status: int(ce.status), Line: int(ce.line), Col: int(ce.col), Message: C.GoString(ce.message)}
	if ce.file != nil {
		e.File = C.GoString(ce.file)
	}
	if e.Status == 0 { // never a success dressed as an error
		e.Status = StatusDevice
	}
	C.kiln_error_clear(ce)
	return e
}

func usageError(format string, args ...any) *Error {
	return &Error{Status: StatusUsage, Message: "kiln: " + fmt.Sprintf(format, args...)}
}

func errClosed() *Error { return usageError("the model is closed") }
