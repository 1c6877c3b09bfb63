package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// handler is the gateway with a connection to nowhere: what these tests check is refused
// before any call is made.
func handler(t *testing.T) http.Handler {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h, err := New(context.Background(), Options{Conn: conn, Ready: func(context.Context) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type apiError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Type            string `json:"@type"`
			Reason          string `json:"reason"`
			FieldViolations []struct {
				Field, Description string
			} `json:"field_violations"`
		} `json:"details"`
	} `json:"error"`
}

func call(t *testing.T, h http.Handler, method, target, body string) (int, apiError, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var e apiError
	if rec.Code != 200 {
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
			t.Fatalf("%s %s: %d, body is not JSON: %s", method, target, rec.Code, rec.Body)
		}
	}
	return rec.Code, e, rec.Body.String()
}

// Every route refuses a parameter it does not take, naming it: the routes come from the
// proto's google.api.http options, and each must be found again from what grpc-gateway matched.
func TestUnknownQueryParameters(t *testing.T) {
	h := handler(t)
	rs := routes()
	if len(rs) != 18 {
		t.Fatalf("%d routes read from the proto, want 18", len(rs))
	}
	for _, rt := range rs {
		target := strings.NewReplacer("{id}", "01a204ab-6318-7baf-a7ed-a35f0ef10590", "{resource_id}", "room-1", "{resource.id}", "room-1", "{pool_id}", "deluxe",
			"{reservation_id}", "01a204ab-6318-7baf-a7ed-a35f0ef10590", "{series_id}", "01a204ab-6318-7baf-a7ed-a35f0ef10591").Replace(rt.template)
		code, e, body := call(t, h, rt.verb, target+"?bogus=1", "{}")
		if code != 400 || e.Error.Code != int(codes.InvalidArgument) || !strings.Contains(e.Error.Message, `"bogus"`) {
			t.Errorf("%s %s?bogus=1: %d %s; want 400 naming bogus", rt.verb, target, code, body)
			continue
		}
		if len(e.Error.Details) != 1 || e.Error.Details[0].FieldViolations[0].Field != "bogus" {
			t.Errorf("%s %s?bogus=1: details %s, want a BadRequest naming bogus", rt.verb, target, body)
		}
	}

	// The case: ?resource= for resource_id listed every resource.
	code, e, _ := call(t, h, "GET", "/v1/reservations:query?resource=room-101&user=frank&start=2030-01-01T00:00:00Z", "")
	want := `unknown query parameters "resource", "user": GET /v1/reservations:query takes desc, end, read.consistency, read.consistency_token, read.max_staleness, resource_id, start, status, user_id`
	if code != 400 || e.Error.Message != want {
		t.Errorf("got %d %q\nwant 400 %q", code, e.Error.Message, want)
	}
	_, e, _ = call(t, h, "POST", "/v1/reservations?user_id=alice", "{}")
	if want := `unknown query parameter "user_id": POST /v1/reservations takes no query parameters: send the fields in the JSON body`; e.Error.Message != want {
		t.Errorf("got %q\nwant %q", e.Error.Message, want)
	}
	_, e, _ = call(t, h, "GET", "/v1/reservations/01a204ab-6318-7baf-a7ed-a35f0ef10590?id=x", "")
	if d := e.Error.Details; len(d) != 1 || d[0].FieldViolations[0].Description != "id is given in the path" {
		t.Errorf("an id in the query: %+v", e)
	}

	// The parameters a route takes pass, in either spelling, nested ones included; they reach
	// the (absent) server: 503, not 400.
	for _, target := range []string{
		"/v1/reservations:query?resource_id=room-1&userId=alice&status=RESERVATION_STATUS_PENDING&desc=true",
		"/v1/reservations?page_size=2&pageToken=",
		"/v1/changes?after_seq=3&resource_id=room-1",
		"/v1/resources/room-1/free?start=2030-01-01T00:00:00Z&end=2030-01-02T00:00:00Z&min_duration=3600s",
		"/v1/pools/deluxe/free?start=2030-01-01T00:00:00Z&end=2030-01-02T00:00:00Z&minDuration=3600s",
		"/v1/availability:search?selector=view%3Dsea&duration=86400s&range_start=2030-01-01T00:00:00Z&rangeEnd=2030-01-09T00:00:00Z&step=3600s&places=2&page_size=5",
		"/v1/reservations/01a204ab-6318-7baf-a7ed-a35f0ef10590?expected_version=2&reason=guest%20called",
	} {
		method := "GET"
		if strings.Contains(target, "expected_version") {
			method = "DELETE"
		}
		if code, _, body := call(t, h, method, target, ""); code != http.StatusServiceUnavailable {
			t.Errorf("%s %s: %d %s, want it passed on (503 from the absent server)", method, target, code, body)
		}
	}
}

// The bindings of FreeSlots are chosen by their path: neither takes in its query the field
// the other has in its path, in either spelling, and the OpenAPI document lists neither.
func TestBindingsOfOneRPC(t *testing.T) {
	h := handler(t)
	for target, want := range map[string]string{
		"/v1/pools/deluxe/free?resource_id=room-1": "resource_id is given in the path of GET /v1/resources/{resource_id}/free",
		"/v1/pools/deluxe/free?resourceId=room-1":  "resourceId is given in the path of GET /v1/resources/{resource_id}/free",
		"/v1/resources/room-1/free?pool_id=deluxe": "pool_id is given in the path of GET /v1/pools/{pool_id}/free",
		"/v1/resources/room-1/free?poolId=deluxe":  "poolId is given in the path of GET /v1/pools/{pool_id}/free",
	} {
		code, e, body := call(t, h, "GET", target, "")
		if code != 400 || len(e.Error.Details) != 1 || len(e.Error.Details[0].FieldViolations) != 1 || e.Error.Details[0].FieldViolations[0].Description != want {
			t.Errorf("GET %s: %d %s; want 400: %s", target, code, body, want)
		}
	}
	_, e, _ := call(t, h, "GET", "/v1/pools/deluxe/free?colour=red", "")
	if want := `unknown query parameter "colour": GET /v1/pools/{pool_id}/free takes end, min_duration, read.consistency, read.consistency_token, read.max_staleness, start`; e.Error.Message != want {
		t.Errorf("got %q\nwant %q", e.Error.Message, want)
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/openapi.json", nil))
	var d struct {
		Paths map[string]map[string]struct {
			Parameters []struct{ Name, In string }
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/v1/pools/{poolId}/free":         "poolId in path, start in query, end in query, minDuration in query, read.consistency in query, read.consistencyToken in query, read.maxStaleness in query",
		"/v1/resources/{resourceId}/free": "resourceId in path, start in query, end in query, minDuration in query, read.consistency in query, read.consistencyToken in query, read.maxStaleness in query",
	} {
		var got []string
		for _, p := range d.Paths[path]["get"].Parameters {
			got = append(got, p.Name+" in "+p.In)
		}
		if strings.Join(got, ", ") != want {
			t.Errorf("OpenAPI GET %s parameters: %v, want %s", path, got, want)
		}
	}
}

func TestBodyRoutesTakeNoQuery(t *testing.T) {
	// A route whose body is "*" takes every field in the body, none in the query.
	for _, rt := range routes() {
		if rt.template == "/v1/reservations/{id}:confirm" && len(rt.query) != 0 {
			t.Errorf("Confirm takes its fields in the body, yet query %v", rt.query)
		}
	}
	if got := patternString("/v1/reservations/{id}:confirm"); got != "/v1/reservations/{id=*}:confirm" {
		t.Errorf("patternString: %s", got)
	}
}

// A body without its wrapper is refused with the wrapper named.
func TestBodyHint(t *testing.T) {
	h := handler(t)
	code, e, body := call(t, h, "POST", "/v1/reservations", `{"user_id": "alice", "resource_id": "room-1"}`)
	if code != 400 || !strings.Contains(e.Error.Message, `"user_id" belongs inside "reservation": {"reservation": {"user_id": …}}`) {
		t.Errorf("unwrapped Reserve: %d %s", code, body)
	}
	if len(e.Error.Details) != 1 || e.Error.Details[0].FieldViolations[0].Field != "user_id" {
		t.Errorf("unwrapped Reserve: details %s", body)
	}
	_, e, body = call(t, h, "POST", "/v1/reservations:batch", `{"resourceId": "room-1"}`)
	if !strings.Contains(e.Error.Message, `"resourceId" belongs inside "reservations": {"reservations": [{"resourceId": …}]}`) {
		t.Errorf("unwrapped ReserveBatch: %s", body)
	}
	_, e, body = call(t, h, "POST", "/v1/reservations", `{"reservation": {}, "colour": "red"}`)
	if !strings.Contains(e.Error.Message, "POST /v1/reservations takes reservation, request_id, hold") {
		t.Errorf("a field of nothing: %s", body)
	}
}

func TestHTTPStatus(t *testing.T) {
	conflict, _ := status.New(codes.FailedPrecondition, "overlap").WithDetails(&errdetails.ErrorInfo{Reason: "RESERVATION_CONFLICT", Domain: "reservation.v1"})
	full, _ := status.New(codes.FailedPrecondition, "full").WithDetails(&errdetails.ErrorInfo{Reason: "POOL_FULL", Domain: "reservation.v1"})
	for _, c := range []struct {
		s    *status.Status
		want int
	}{
		{conflict, 409}, {full, 409}, {status.New(codes.FailedPrecondition, "blocked"), 400},
		{status.New(codes.Aborted, "version"), 409}, {status.New(codes.NotFound, ""), 404},
		{status.New(codes.Unauthenticated, ""), 401}, {status.New(codes.PermissionDenied, ""), 403},
		{status.New(codes.ResourceExhausted, ""), 429}, {status.New(codes.Unavailable, ""), 503},
		{status.New(codes.DeadlineExceeded, ""), 504}, {status.New(codes.OutOfRange, ""), 400},
		{status.New(codes.Internal, ""), 500}, {status.New(codes.Unimplemented, ""), 501},
	} {
		if got := httpStatus(c.s); got != c.want {
			t.Errorf("%v %v: %d, want %d", c.s.Code(), c.s.Details(), got, c.want)
		}
	}
}

// Routing errors have the same shape.
func TestRoutingErrorShape(t *testing.T) {
	code, e, body := call(t, handler(t), "GET", "/v1/nothing-here", "")
	if code != 404 || e.Error.Code != int(codes.NotFound) {
		t.Errorf("unknown path: %d %s", code, body)
	}
}

// The OpenAPI document describes the error shape served.
func TestOpenAPIErrorShape(t *testing.T) {
	req := httptest.NewRequest("GET", "/openapi.json", nil)
	rec := httptest.NewRecorder()
	handler(t).ServeHTTP(rec, req)
	var d struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct{ Schema map[string]any }
		}
		Definitions map[string]struct{ Properties map[string]map[string]any }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	n := 0
	for path, ops := range d.Paths {
		for verb, op := range ops {
			n++
			if ref := op.Responses["default"].Schema["$ref"]; ref != "#/definitions/v1Error" {
				t.Errorf("%s %s: errors documented as %v", verb, path, ref)
			}
		}
	}
	if n != 18 || d.Definitions["v1Error"].Properties["error"]["$ref"] != "#/definitions/rpcStatus" {
		t.Errorf("%d operations; v1Error %v", n, d.Definitions["v1Error"])
	}
}
