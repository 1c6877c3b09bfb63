package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"reservation"
	pb "reservation/proto/reservation/v1"
	"reservation/service"
)

// Every error the HTTP API answers, unary or streamed, has one shape: a google.rpc.Status as
// JSON, with its details, under "error":
//
//	{"error": {"code": 9, "message": "…", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", …}]}}
//
// A unary call answers it as the whole body (with no newline, like its answers); a stream (Query, Listen) as its last line, after
// any {"result": …} lines. grpc-gateway writes stream errors that way, and errorHandler writes
// unary ones the same way.

// conflictReasons are the ErrorInfo reasons answered with 409 Conflict: the request is sound
// but collides with the state of the resource, or of every unit of a pool.
var conflictReasons = []string{service.ConflictReason, reservation.ReasonPoolFull}

// httpStatus is the HTTP status of a gRPC status: the standard google.rpc mapping, except 409
// for a conflict that the service reports as FAILED_PRECONDITION (400 in that mapping).
func httpStatus(s *status.Status) int {
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && slices.Contains(conflictReasons, info.GetReason()) {
			return http.StatusConflict
		}
	}
	return runtime.HTTPStatusFromCode(s.Code())
}

var statusJSON = protojson.MarshalOptions{UseProtoNames: true}

// writeError answers err as {"error": google.rpc.Status}.
func (rs routeSet) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := 0
	var withStatus *runtime.HTTPStatusError
	if errors.As(err, &withStatus) {
		code, err = withStatus.HTTPStatus, withStatus.Err
	}
	s := status.Convert(err)
	if s.Code() == codes.InvalidArgument {
		s = hintBody(rs.of(r), s)
	}
	if code == 0 {
		code = httpStatus(s)
	}
	body, merr := statusJSON.Marshal(s.Proto())
	if merr != nil {
		body = []byte(`{"code": 13, "message": "failed to marshal the error"}`)
		code = http.StatusInternalServerError
	}
	h := w.Header()
	h.Del("Trailer")
	h.Del("Transfer-Encoding")
	h.Set("Content-Type", "application/json")
	if s.Code() == codes.Unauthenticated {
		// RFC 6750: the scheme, a realm, and invalid_token when a token was sent but refused.
		challenge := `Bearer realm="reservation"`
		if r.Header.Get("Authorization") != "" {
			challenge += `, error="invalid_token"`
		}
		h.Set("WWW-Authenticate", challenge)
	}
	w.WriteHeader(code)
	w.Write([]byte(`{"error":`))
	w.Write(body)
	w.Write([]byte("}"))
}

// errorHandler is the mux's error handler (runtime.WithErrorHandler).
func (rs routeSet) errorHandler(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	rs.writeError(w, r, err)
}

// route is one google.api.http binding of an RPC.
type route struct {
	verb, template string
	method         protoreflect.MethodDescriptor
	// body is the HttpRule's body: "*" (the whole request), a field name, or "" (none).
	body string
	// path are the fields bound in the template; query the query parameters the route takes,
	// by proto and JSON name (the two spellings grpc-gateway accepts).
	path, query map[string]bool
	// elsewhere are the fields another binding of the RPC takes in its path, by proto and
	// JSON name, with that binding: they choose the binding, so this one does not take them
	// in its query (GET /v1/pools/{pool_id}/free?resource_id=… would ask about the resource).
	elsewhere map[string]*route
}

// routeSet holds the routes keyed by verb and pattern as runtime.Pattern.String spells it
// ("GET /v1/reservations/{id=*}").
type routeSet map[string]*route

// routes reads the service's google.api.http options.
func routes() routeSet {
	out := routeSet{}
	svc := pb.File_reservation_v1_reservation_proto.Services().ByName("ReservationService")
	for i := range svc.Methods().Len() {
		m := svc.Methods().Get(i)
		rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
		if rule == nil {
			continue
		}
		var bindings []*route
		for _, b := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
			rt := newRoute(m, b)
			bindings = append(bindings, rt)
			out[rt.verb+" "+patternString(rt.template)] = rt
		}
		for _, rt := range bindings {
			for _, other := range bindings {
				for name := range other.path {
					if rt.path[name] {
						continue
					}
					for _, n := range []string{name, jsonName(m.Input(), name)} {
						if rt.query[n] {
							delete(rt.query, n)
							rt.elsewhere[n] = other
						}
					}
				}
			}
		}
	}
	return out
}

// jsonName is the JSON spelling of the field path name (a.b) of msg, or name when it is not
// one.
func jsonName(msg protoreflect.MessageDescriptor, name string) string {
	var parts []string
	for p := range strings.SplitSeq(name, ".") {
		if msg == nil {
			return name
		}
		f := msg.Fields().ByName(protoreflect.Name(p))
		if f == nil {
			return name
		}
		parts = append(parts, f.JSONName())
		msg = f.Message()
	}
	return strings.Join(parts, ".")
}

var pathVar = regexp.MustCompile(`\{([^}=]+)(=[^}]*)?\}`)

// patternString spells a template as runtime.Pattern.String does: "{id}" is "{id=*}".
func patternString(template string) string {
	return pathVar.ReplaceAllStringFunc(template, func(v string) string {
		if strings.Contains(v, "=") {
			return v
		}
		return strings.TrimSuffix(v, "}") + "=*}"
	})
}

func newRoute(m protoreflect.MethodDescriptor, rule *annotations.HttpRule) *route {
	rt := &route{method: m, body: rule.GetBody(), path: map[string]bool{}, query: map[string]bool{}, elsewhere: map[string]*route{}}
	switch p := rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		rt.verb, rt.template = http.MethodGet, p.Get
	case *annotations.HttpRule_Post:
		rt.verb, rt.template = http.MethodPost, p.Post
	case *annotations.HttpRule_Put:
		rt.verb, rt.template = http.MethodPut, p.Put
	case *annotations.HttpRule_Patch:
		rt.verb, rt.template = http.MethodPatch, p.Patch
	case *annotations.HttpRule_Delete:
		rt.verb, rt.template = http.MethodDelete, p.Delete
	case *annotations.HttpRule_Custom:
		rt.verb, rt.template = p.Custom.GetKind(), p.Custom.GetPath()
	}
	for _, v := range pathVar.FindAllStringSubmatch(rt.template, -1) {
		rt.path[v[1]] = true
	}
	if rt.body == "*" {
		return rt // every field not in the path comes in the body
	}
	addQuery(rt.query, m.Input(), "", "", func(f protoreflect.FieldDescriptor, name string) bool {
		return rt.path[name] || string(f.Name()) == rt.body && !strings.Contains(name, ".")
	})
	return rt
}

// addQuery adds the query parameter names of msg's fields under a prefix: a message field that
// is not a well-known type (Timestamp, Duration, …) is reached through its fields (a.b).
func addQuery(into map[string]bool, msg protoreflect.MessageDescriptor, protoPrefix, jsonPrefix string, skip func(protoreflect.FieldDescriptor, string) bool) {
	for i := range msg.Fields().Len() {
		f := msg.Fields().Get(i)
		name, json := protoPrefix+string(f.Name()), jsonPrefix+f.JSONName()
		if skip(f, name) {
			continue
		}
		if f.Message() != nil && !f.IsMap() && !strings.HasPrefix(string(f.Message().FullName()), "google.protobuf.") {
			if len(strings.Split(name, ".")) < 4 { // no endless recursion through self-referencing messages
				addQuery(into, f.Message(), name+".", json+".", skip)
			}
			continue
		}
		into[name], into[json] = true, true
	}
}

// names lists the route's query parameters in proto spelling.
func (rt *route) names() []string {
	var out []string
	for n := range rt.query {
		if !strings.ContainsFunc(n, func(c rune) bool { return c >= 'A' && c <= 'Z' }) || !rt.query[toSnake(n)] {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func toSnake(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'A' && c <= 'Z' {
			b.WriteByte('_')
			c += 'a' - 'A'
		}
		b.WriteRune(c)
	}
	return b.String()
}

// checkQuery refuses query parameters the route does not take. grpc-gateway ignores them,
// so ?resource=room-101 (for resource_id) would silently list every resource.
func (rt *route) checkQuery(r *http.Request) error {
	var unknown []string
	for key := range r.URL.Query() {
		name, _, _ := strings.Cut(key, "[") // map fields: name[key]=value
		if !rt.query[name] {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	what := rt.verb + " " + rt.template
	takes := "takes no query parameters"
	if len(rt.query) > 0 {
		takes = "takes " + strings.Join(rt.names(), ", ")
	} else if rt.body != "" {
		takes += ": send the fields in the JSON body"
	}
	br := &errdetails.BadRequest{}
	for _, u := range unknown {
		desc := "not a query parameter of " + what
		if rt.path[u] {
			desc = u + " is given in the path"
		} else if other := rt.elsewhere[u]; other != nil {
			desc = u + " is given in the path of " + other.verb + " " + other.template
		}
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: u, Description: desc})
	}
	plural := ""
	if len(unknown) > 1 {
		plural = "s"
	}
	st, _ := status.New(codes.InvalidArgument, fmt.Sprintf("unknown query parameter%s %s: %s %s", plural, quoteAll(unknown), what, takes)).WithDetails(br)
	return st.Err()
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}

var unknownField = regexp.MustCompile(`unknown field "([^"]+)"`)

// hintBody explains a JSON body refused for an unknown field, most often a body without its
// wrapper: POST /v1/reservations with {"user_id": …} instead of {"reservation": {"user_id": …}}.
func hintBody(rt *route, s *status.Status) *status.Status {
	m := unknownField.FindStringSubmatch(s.Message())
	if m == nil || rt == nil || rt.body == "" {
		return s
	}
	name := m[1]
	msg := rt.method.Input()
	if rt.body != "*" {
		f := msg.Fields().ByName(protoreflect.Name(rt.body))
		if f == nil || f.Message() == nil {
			return s
		}
		msg = f.Message()
	}
	var fields []string
	hint := ""
	for i := range msg.Fields().Len() {
		f := msg.Fields().Get(i)
		if rt.path[string(f.Name())] && rt.body == "*" {
			continue
		}
		fields = append(fields, string(f.Name()))
		inner := f.Message()
		if hint != "" || inner == nil || strings.HasPrefix(string(inner.FullName()), "google.protobuf.") {
			continue
		}
		if inner.Fields().ByName(protoreflect.Name(name)) != nil || inner.Fields().ByJSONName(name) != nil {
			if f.IsList() {
				hint = fmt.Sprintf(`%q belongs inside %q: {%q: [{%q: …}]}`, name, f.Name(), f.Name(), name)
			} else {
				hint = fmt.Sprintf(`%q belongs inside %q: {%q: {%q: …}}`, name, f.Name(), f.Name(), name)
			}
		}
	}
	desc := hint
	if hint == "" {
		desc = fmt.Sprintf("%s %s takes %s", rt.verb, rt.template, strings.Join(fields, ", "))
	}
	// Not protobuf's own message: it starts with "proto:" and a space that is at random a
	// no-break space, so that nobody matches it.
	text := fmt.Sprintf("unknown field %q in the JSON body; %s", name, desc)
	br := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: name, Description: "unknown field: " + desc}}}
	out, err := status.New(codes.InvalidArgument, text).WithDetails(br)
	if err != nil {
		return s
	}
	return out
}

// of is the route grpc-gateway matched for r, or nil.
func (rs routeSet) of(r *http.Request) *route {
	p, ok := runtime.HTTPPattern(r.Context())
	if !ok {
		return nil
	}
	return rs[r.Method+" "+p.String()]
}

// documentErrors makes the OpenAPI document say what errors look like: protoc-gen-openapiv2
// describes every error response as a bare google.rpc.Status, and this gateway wraps it in
// {"error": …}, as streams do.
func documentErrors(doc []byte) ([]byte, error) {
	var d map[string]any
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	defs, _ := d["definitions"].(map[string]any)
	if defs == nil {
		return doc, nil
	}
	defs["v1Error"] = map[string]any{
		"type":        "object",
		"description": "Every error, unary or streamed: the google.rpc.Status under \"error\".",
		"properties":  map[string]any{"error": map[string]any{"$ref": "#/definitions/rpcStatus"}},
	}
	paths, _ := d["paths"].(map[string]any)
	for _, p := range paths {
		ops, _ := p.(map[string]any)
		for _, op := range ops {
			responses, _ := op.(map[string]any)["responses"].(map[string]any)
			def, _ := responses["default"].(map[string]any)
			if schema, _ := def["schema"].(map[string]any); schema["$ref"] == "#/definitions/rpcStatus" {
				schema["$ref"] = "#/definitions/v1Error"
			}
		}
	}
	return json.MarshalIndent(d, "", "  ")
}

// documentQuery leaves out of the OpenAPI document's routes the query parameters they do not
// take because another binding of the RPC takes them in its path (route.elsewhere):
// protoc-gen-openapiv2 lists every field that is not in the route's own path.
func (rs routeSet) documentQuery(doc []byte) ([]byte, error) {
	var d map[string]any
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	paths, _ := d["paths"].(map[string]any)
	for _, rt := range rs {
		if len(rt.elsewhere) == 0 {
			continue
		}
		// The document spells the path's fields in JSON: /v1/pools/{poolId}/free.
		path := pathVar.ReplaceAllStringFunc(rt.template, func(v string) string {
			return "{" + jsonName(rt.method.Input(), pathVar.FindStringSubmatch(v)[1]) + "}"
		})
		ops, _ := paths[path].(map[string]any)
		op, _ := ops[strings.ToLower(rt.verb)].(map[string]any)
		params, _ := op["parameters"].([]any)
		if op == nil {
			return nil, fmt.Errorf("openapi document: no %s %s", rt.verb, path)
		}
		op["parameters"] = slices.DeleteFunc(params, func(p any) bool {
			param, _ := p.(map[string]any)
			name, _ := param["name"].(string)
			return param["in"] == "query" && rt.elsewhere[name] != nil
		})
	}
	return json.MarshalIndent(d, "", "  ")
}
