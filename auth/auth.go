// Package auth checks bearer tokens. Tokens are listed in a JSON file by their SHA-256, each
// with the user it stands for and a role:
//
//	{"tokens": [{"sha256": "9f86d0…", "user": "alice", "role": "user"},
//	            {"sha256": "2c26b4…", "user": "desk", "role": "admin"}]}
//
// A call's token comes as "authorization: Bearer <token>" metadata (the HTTP gateway passes
// the Authorization header on). What a caller may do is decided in service/.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"reservation"
)

// Roles a token may have.
const (
	RoleUser  = "user"
	RoleAdmin = "admin"
)

// entry is one token of the file.
type entry struct {
	SHA256 string `json:"sha256"`
	User   string `json:"user"`
	Role   string `json:"role"`
}

// Authenticator knows the tokens of one file.
type Authenticator struct {
	tokens []entry
	hashes [][]byte
}

// Load reads a token file.
func Load(path string) (*Authenticator, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	var f struct {
		Tokens []entry `json:"tokens"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	a := &Authenticator{}
	for i, t := range f.Tokens {
		h, err := hex.DecodeString(t.SHA256)
		var v reservation.Violations
		v.ID("user", t.User)
		switch {
		case err != nil || len(h) != sha256.Size:
			return nil, fmt.Errorf("auth file %s: token %d: sha256 must be 64 hex digits", path, i)
		case v.Err() != nil:
			return nil, fmt.Errorf("auth file %s: token %d: %v", path, i, v.Err())
		case t.Role != RoleUser && t.Role != RoleAdmin:
			return nil, fmt.Errorf("auth file %s: token %d: role must be %q or %q, got %q", path, i, RoleUser, RoleAdmin, t.Role)
		}
		a.tokens, a.hashes = append(a.tokens, t), append(a.hashes, h)
	}
	if len(a.tokens) == 0 {
		return nil, fmt.Errorf("auth file %s lists no token", path)
	}
	return a, nil
}

// Hash is how a token is stored in the file.
func Hash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// Caller returns who token stands for.
func (a *Authenticator) Caller(token string) (reservation.Caller, bool) {
	h := sha256.Sum256([]byte(token))
	found := -1
	for i, want := range a.hashes {
		if subtle.ConstantTimeCompare(h[:], want) == 1 {
			found = i
		}
	}
	if found < 0 {
		return reservation.Caller{}, false
	}
	t := a.tokens[found]
	return reservation.Caller{UserID: t.User, Admin: t.Role == RoleAdmin}, true
}

// open are the services any caller may use without a token: health checks and reflection.
func open(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.")
}

func (a *Authenticator) authenticate(ctx context.Context, method string) (context.Context, error) {
	if open(method) {
		return ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) != 1 {
		return nil, status.Error(codes.Unauthenticated, `missing token: send "authorization: Bearer <token>"`)
	}
	token, ok := strings.CutPrefix(values[0], "Bearer ")
	if !ok {
		return nil, status.Error(codes.Unauthenticated, `malformed authorization: want "Bearer <token>"`)
	}
	c, ok := a.Caller(strings.TrimSpace(token))
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "unknown token")
	}
	return reservation.WithCaller(ctx, c), nil
}

// ServerOptions make a gRPC server refuse calls without a known token, and tell the handlers
// who calls.
func (a *Authenticator) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			ctx, err := a.authenticate(ctx, info.FullMethod)
			if err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			ctx, err := a.authenticate(ss.Context(), info.FullMethod)
			if err != nil {
				return err
			}
			return h(srv, &callerStream{ss, ctx})
		}),
	}
}

// callerStream is a server stream whose context carries the caller.
type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *callerStream) Context() context.Context { return s.ctx }
