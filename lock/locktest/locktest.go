// Package locktest connects tests to the real Redis they run against.
package locktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"reservation/lock"
)

// Addr returns the address of the test Redis: $RESERVATION_TEST_REDIS_ADDR, or 127.0.0.1:6379.
func Addr() string {
	if addr := os.Getenv("RESERVATION_TEST_REDIS_ADDR"); addr != "" {
		return addr
	}
	return "127.0.0.1:6379"
}

// Client returns a client of the test Redis, configured as lock.ClientOptions recommends and
// closed when the test ends. It fails the test when Redis does not answer: a test that needs
// Redis never skips, except under -short (make check), which leaves out every test that needs a
// server; make test never passes it.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Redis: not run under -short (make check runs only what needs no server; make test runs it)")
	}
	client := redis.NewClient(lock.ClientOptions(Addr()))
	t.Cleanup(func() { _ = client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatalf("test redis at %s (RESERVATION_TEST_REDIS_ADDR): %v", Addr(), err)
	}
	return client
}

// Prefix returns a key prefix unique to the test, and deletes the keys under it when the test
// ends.
func Prefix(t testing.TB, client redis.UniversalClient) string {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	prefix := "test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			if err := client.Del(ctx, iter.Val()).Err(); err != nil {
				t.Errorf("delete test key %q: %v", iter.Val(), err)
			}
		}
		if err := iter.Err(); err != nil {
			t.Errorf("scan test keys %q: %v", prefix+"*", err)
		}
	})
	return prefix
}

// ClosedAddr returns a loopback address where nothing listens: a Redis (or MySQL) that is down.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}
