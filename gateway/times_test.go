package gateway

import (
	"strings"
	"testing"
)

// TestBadTimesNameTheirFields: a time or duration that does not parse, in a JSON body or a
// query string, is a 400 whose BadRequest names each bad field with the form to write; in a
// query string an unescaped + (read as a space) gets the %2B hint. Refused before any call:
// the gateway's connection goes nowhere.
func TestBadTimesNameTheirFields(t *testing.T) {
	h := handler(t)
	for _, tc := range []struct {
		name, method, target, body string
		fields                     []string // the violations, in order
		hint                       string   // in the first violation's description
	}{
		{"body time with a space", "POST", "/v1/reservations",
			`{"reservation": {"user_id": "a", "resource_id": "r", "start": "2030-03-05 14:00:00", "end": "2030-03-05T15:00:00Z"}}`,
			[]string{"reservation.start"}, "write e.g. 2030-03-05T14:00:00Z"},
		{"body: every bad field, JSON names kept", "POST", "/v1/reservations:batch",
			`{"reservations": [{"start": "2030-03-05T14:00:00Z", "end": "tomorrow"}, {"start": "2030-03-05"}], "hold": "5m"}`,
			[]string{"hold", "reservations[0].end", "reservations[1].start"}, "is not a duration: write seconds with an s"},
		{"query with an unescaped +", "GET", "/v1/reservations:query?resource_id=r&start=2030-03-05T14:00:00+02:00", "",
			[]string{"start"}, "write %2B for + (2030-03-05T14:00:00%2B02:00)"},
		{"query duration and time", "GET", "/v1/resources/room-1/free?start=2030-01-01&end=2030-01-02T00:00:00Z&min_duration=1h", "",
			[]string{"min_duration", "start"}, "is not a duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, e, raw := call(t, h, tc.method, tc.target, tc.body)
			if code != 400 || e.Error.Code != 3 || len(e.Error.Details) != 1 {
				t.Fatalf("%d %s; want 400, INVALID_ARGUMENT with a BadRequest", code, raw)
			}
			var got []string
			for _, v := range e.Error.Details[0].FieldViolations {
				got = append(got, v.Field)
			}
			if strings.Join(got, " ") != strings.Join(tc.fields, " ") {
				t.Errorf("fields %q, want %q: %s", got, tc.fields, raw)
			}
			if d := e.Error.Details[0].FieldViolations; len(d) == 0 || !strings.Contains(d[0].Description, tc.hint) {
				t.Errorf("first violation lacks %q: %s", tc.hint, raw)
			}
			if strings.Contains(e.Error.Message, "proto:") || !strings.Contains(e.Error.Message, tc.fields[0]) {
				t.Errorf("message %q: want one naming %s, not protobuf's", e.Error.Message, tc.fields[0])
			}
		})
	}
	// Good times pass this check: the call is made (and fails: the connection goes nowhere).
	for _, target := range []string{
		"/v1/reservations:query?resource_id=r&start=2030-03-05T14:00:00%2B02:00",
		"/v1/resources/room-1/free?start=2030-01-01T00:00:00Z&end=2030-01-02T00:00:00Z&min_duration=3600s",
	} {
		if code, _, raw := call(t, h, "GET", target, ""); code != 503 {
			t.Errorf("GET %s: %d %s; want the call made (503: no server)", target, code, raw)
		}
	}
}
