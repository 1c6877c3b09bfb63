package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Times and durations in JSON are strings that protojson parses: a time in RFC 3339
// ("2030-03-05T14:00:00Z", "2030-03-05T14:00:00+02:00"), a duration in seconds with an s
// ("3600s"). protojson refuses anything else with "invalid google.protobuf.Timestamp value"
// and the value, but not the field, and a query string's parser with a Go layout. checkTimes
// finds each such field before the call, and answers a BadRequest that names every one with
// the form to write: for a query string also that a + there stands for a space (%2B).

const (
	timestampName = "google.protobuf.Timestamp"
	durationName  = "google.protobuf.Duration"
)

// checkTimes refuses a request whose query parameters or JSON body hold a time or duration
// that does not parse, naming each one. A body is read and put back for the handler; a body
// that is not JSON is left for the handler to refuse.
func (rt *route) checkTimes(r *http.Request) error {
	var violations []*errdetails.BadRequest_FieldViolation
	for key, values := range r.URL.Query() {
		f := fieldAt(rt.method.Input(), key)
		if f == nil || f.Message() == nil {
			continue
		}
		for _, v := range values {
			if d := badTime(f.Message().FullName(), v, true); d != "" {
				violations = append(violations, &errdetails.BadRequest_FieldViolation{Field: key, Description: d})
			}
		}
	}
	if rt.body != "" && r.Body != nil && r.Body != http.NoBody {
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil {
			return nil // the handler reads the same error
		}
		var doc any
		if json.Unmarshal(body, &doc) == nil {
			msg, prefix := rt.method.Input(), ""
			if rt.body != "*" {
				if f := msg.Fields().ByName(protoreflect.Name(rt.body)); f != nil && f.Message() != nil {
					msg, prefix = f.Message(), rt.body+"."
				}
			}
			violations = append(violations, bodyTimes(msg, doc, prefix)...)
		}
	}
	if len(violations) == 0 {
		return nil
	}
	slices.SortFunc(violations, func(a, b *errdetails.BadRequest_FieldViolation) int { return strings.Compare(a.Field, b.Field) })
	names := make([]string, len(violations))
	for i, v := range violations {
		names[i] = v.Field
	}
	st, err := status.New(codes.InvalidArgument, fmt.Sprintf("bad time or duration in %s: %s", strings.Join(names, ", "), violations[0].Description)).
		WithDetails(&errdetails.BadRequest{FieldViolations: violations})
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return st.Err()
}

// bodyTimes is the violations of the times and durations in doc, a JSON value of msg, with
// each field named from prefix (reservation.start, reservations[1].end).
func bodyTimes(msg protoreflect.MessageDescriptor, doc any, prefix string) []*errdetails.BadRequest_FieldViolation {
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil
	}
	var out []*errdetails.BadRequest_FieldViolation
	for key, v := range obj {
		f := msg.Fields().ByName(protoreflect.Name(key))
		if f == nil {
			f = msg.Fields().ByJSONName(key)
		}
		if f == nil || f.Message() == nil || f.IsMap() {
			continue
		}
		name := prefix + key
		inner := f.Message()
		check := func(name string, v any) {
			switch inner.FullName() {
			case timestampName, durationName:
				s, ok := v.(string)
				if !ok {
					return // protojson names a wrong type well enough
				}
				if d := badTime(inner.FullName(), s, false); d != "" {
					out = append(out, &errdetails.BadRequest_FieldViolation{Field: name, Description: d})
				}
			default:
				if !strings.HasPrefix(string(inner.FullName()), "google.protobuf.") {
					out = append(out, bodyTimes(inner, v, name+".")...)
				}
			}
		}
		if list, ok := v.([]any); ok && f.IsList() {
			for i, item := range list {
				check(name+"["+strconv.Itoa(i)+"]", item)
			}
			continue
		}
		check(name, v)
	}
	return out
}

// badTime says what is wrong with v as a value of the well-known type kind, or "" when it
// parses (or kind is no time). inQuery: v comes from a query string, where + means a space.
func badTime(kind protoreflect.FullName, v string, inQuery bool) string {
	quoted, _ := json.Marshal(v)
	switch kind {
	case timestampName:
		if protojson.Unmarshal(quoted, &timestamppb.Timestamp{}) == nil {
			return ""
		}
		d := fmt.Sprintf("%q is not an RFC 3339 time: write e.g. 2030-03-05T14:00:00Z or 2030-03-05T14:00:00+02:00", v)
		if inQuery && strings.Contains(v, " ") {
			fixed, _ := json.Marshal(strings.ReplaceAll(v, " ", "+"))
			if protojson.Unmarshal(fixed, &timestamppb.Timestamp{}) == nil {
				d = fmt.Sprintf("%q is not an RFC 3339 time: a + in a query string stands for a space; write %%2B for + (%s)",
					v, strings.ReplaceAll(v, " ", "%2B"))
			}
		}
		return d
	case durationName:
		if protojson.Unmarshal(quoted, &durationpb.Duration{}) == nil {
			return ""
		}
		return fmt.Sprintf("%q is not a duration: write seconds with an s, e.g. 3600s or 0.5s", v)
	}
	return ""
}

// fieldAt is the field of msg at the query parameter name (a.b, in proto or JSON spelling),
// or nil.
func fieldAt(msg protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	var f protoreflect.FieldDescriptor
	for part := range strings.SplitSeq(name, ".") {
		if msg == nil {
			return nil
		}
		f = msg.Fields().ByName(protoreflect.Name(part))
		if f == nil {
			f = msg.Fields().ByJSONName(part)
		}
		if f == nil {
			return nil
		}
		msg = f.Message()
	}
	return f
}
