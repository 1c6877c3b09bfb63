package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"reservation"
	"reservation/lock/redistest"
)

// redisLocker builds the locker reservationd would from args and env (RESERVATION_* variables).
func redisLocker(t *testing.T, args []string, env map[string]string) reservation.Locker {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := parseFlags(args)
	if err != nil {
		t.Fatal(err)
	}
	l, closeLocker, err := newLocker(t.Context(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeLocker)
	return l
}

func lockOnce(t *testing.T, l reservation.Locker, key string) error {
	t.Helper()
	unlock, err := l.Lock(t.Context(), key)
	if err == nil {
		unlock(t.Context())
	}
	return err
}

// TestRedisAuth: a Redis with requirepass and an ACL user limited to its prefix's keys.
func TestRedisAuth(t *testing.T) {
	s := redistest.Start(t, redistest.Options{Args: []string{
		"--requirepass", "default-secret",
		"--user", "svc", "on", ">svc-secret", "~blue:*", "+@all",
	}})
	passFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(passFile, []byte("svc-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("default user, password from the environment", func(t *testing.T) {
		l := redisLocker(t, []string{"--redis-addr", s.Addr}, map[string]string{"RESERVATION_REDIS_PASSWORD": "default-secret"})
		if err := lockOnce(t, l, "k"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ACL user, password from a file", func(t *testing.T) {
		l := redisLocker(t, []string{"--redis-addr", s.Addr, "--redis-username", "svc", "--redis-password-file", passFile, "--redis-prefix", "blue:"}, nil)
		if err := lockOnce(t, l, "k"); err != nil {
			t.Fatal(err)
		}
	})
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"wrong password":         {[]string{"--redis-addr", s.Addr}, map[string]string{"RESERVATION_REDIS_PASSWORD": "guess"}, "WRONGPASS"},
		"no password":            {[]string{"--redis-addr", s.Addr}, nil, "NOAUTH"},
		"ACL user, other prefix": {[]string{"--redis-addr", s.Addr, "--redis-username", "svc", "--redis-password-file", passFile}, nil, "NOPERM"},
	} {
		t.Run(name, func(t *testing.T) {
			l := redisLocker(t, tc.args, tc.env)
			err := lockOnce(t, l, "k")
			if reservation.ErrorCode(err) != reservation.EUNAVAILABLE || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Lock = %v, want UNAVAILABLE with %s (the write goes on under the database guard)", err, tc.want)
			}
		})
	}
}

// TestRedisTLS: a Redis that speaks TLS only and requires client certificates, with the
// certificates made here.
func TestRedisTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	ca.issue(t, dir, "server", true)
	ca.issue(t, dir, "client", false)
	s := redistest.Start(t, redistest.Options{TLS: true, Args: []string{
		"--tls-cert-file", filepath.Join(dir, "server.pem"), "--tls-key-file", filepath.Join(dir, "server-key.pem"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.pem"), "--tls-auth-clients", "yes",
	}})

	l := redisLocker(t, []string{"--redis-addr", s.Addr, "--redis-tls", "--redis-tls-ca", filepath.Join(dir, "ca.pem"),
		"--redis-tls-cert", filepath.Join(dir, "client.pem"), "--redis-tls-key", filepath.Join(dir, "client-key.pem")}, nil)
	if err := lockOnce(t, l, "k"); err != nil {
		t.Fatalf("Lock over TLS: %v", err)
	}

	noCert := redisLocker(t, []string{"--redis-addr", s.Addr, "--redis-tls", "--redis-tls-ca", filepath.Join(dir, "ca.pem")}, nil)
	if err := lockOnce(t, noCert, "k"); reservation.ErrorCode(err) != reservation.EUNAVAILABLE {
		t.Errorf("Lock without a client certificate = %v, want UNAVAILABLE", err)
	}
	noTLS := redisLocker(t, []string{"--redis-addr", s.Addr}, nil)
	if err := lockOnce(t, noTLS, "k"); reservation.ErrorCode(err) != reservation.EUNAVAILABLE {
		t.Errorf("Lock without TLS = %v, want UNAVAILABLE", err)
	}
}

// TestRedisPrefixes: two deployments with different prefixes on one Redis never wait for each
// other; two replicas of one deployment do.
func TestRedisPrefixes(t *testing.T) {
	s := redistest.Start(t, redistest.Options{})
	blue := redisLocker(t, []string{"--redis-addr", s.Addr, "--redis-prefix", "blue:"}, nil)
	green := redisLocker(t, []string{"--redis-addr", s.Addr, "--redis-prefix", "green:"}, nil)
	blue2 := redisLocker(t, []string{"--redis-addr", s.Addr, "--redis-prefix", "blue:", "--lock-wait", "300ms"}, nil)

	unlockBlue, err := blue.Lock(t.Context(), "room-1", "room-2")
	if err != nil {
		t.Fatal(err)
	}
	defer unlockBlue(t.Context())
	start := time.Now()
	if err := lockOnce(t, green, "room-1"); err != nil {
		t.Fatalf("green waited for blue's lock: %v", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("green took %s to lock a resource only blue holds", d)
	}
	if err := lockOnce(t, blue2, "room-2"); reservation.ErrorCode(err) != reservation.EABORTED {
		t.Errorf("a second blue replica took blue's lock: %v, want ABORTED", err)
	}
	keys, err := s.Client(t).Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "blue:") && !strings.HasPrefix(k, "green:") {
			t.Errorf("key %q outside the deployments' prefixes", k)
		}
	}
}
