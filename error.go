package reservation

import (
	"errors"
	"fmt"
)

// Application error codes. Only service/ turns them into gRPC statuses.
const (
	EINVALID     = "invalid"      // the request is malformed; Fields says where
	ENOTFOUND    = "not_found"    // no such reservation
	ECONFLICT    = "conflict"     // the window overlaps existing reservations; Conflicts names them
	ESTATE       = "state"        // the reservation is not in a state that allows the change
	EABORTED     = "aborted"      // a concurrent writer got in the way; retrying may succeed
	EUNAVAILABLE = "unavailable"  // the database cannot be reached; retrying later may succeed
	EOUTOFRANGE  = "out_of_range" // a feed position that is no longer, or not yet, in the feed
	EEXHAUSTED   = "exhausted"    // a listener fell too far behind; it may resume from its position
	EPERMISSION  = "permission"   // the caller may not do this (auth on)
	EINTERNAL    = "internal"
)

// Error is an application error: a code callers can branch on and a message for people.
type Error struct {
	Code      string
	Message   string
	Fields    Violations // EINVALID: each bad field
	Conflicts []Conflict // ECONFLICT: each reservation in the way
	Truncated bool       // ECONFLICT: there are more conflicts than listed
	Reason    string     // a machine-readable reason, such as ReasonFeedDiverged; "" for none
	Err       error      // the cause, if any
	// Metadata says what Reason is about, as google.rpc.ErrorInfo metadata: snake_case keys,
	// times in RFC 3339 (FormatTime) as the conflicts' are; nil for none.
	Metadata map[string]string
}

// Conflict is a reservation in the way of item Index of a Reserve call: a stored one, or an
// earlier item of the same call.
type Conflict struct {
	Index    int
	Existing *Reservation
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first Error in err's chain: "" for nil, EINTERNAL for an
// error that is not an application error.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	}
	return EINTERNAL
}
