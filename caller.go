package reservation

import "context"

// Caller is who makes a call, when the service checks (auth on): a user acts on their own
// reservations only; an admin acts for anyone.
type Caller struct {
	UserID string
	Admin  bool
}

type callerKey struct{}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller ctx carries; false when none does (auth off).
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}
