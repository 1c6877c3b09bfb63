package repo_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

func TestSplitHosts(t *testing.T) {
	for _, tc := range []struct {
		dsn, single string
		hosts       []string
	}{
		{"root@tcp(127.0.0.1:3306)/db", "root@tcp(127.0.0.1:3306)/db", nil},
		{"u:p@tcp(a:1,b:2)/db?timeout=2s", "u:p@tcp(a:1)/db?timeout=2s", []string{"a:1", "b:2"}},
		{"u:p@ss@tcp(a, b:4)/", "u:p@ss@tcp(a:3306)/", []string{"a:3306", "b:4"}},
		{"u@tcp([::1]:1,[::2]:2)/db", "u@tcp([::1]:1)/db", []string{"[::1]:1", "[::2]:2"}},
		{"/db", "/db", nil},
	} {
		single, hosts, err := repo.SplitHosts(tc.dsn)
		if err != nil || single != tc.single || !slices.Equal(hosts, tc.hosts) {
			t.Errorf("%q: got %q %v %v, want %q %v", tc.dsn, single, hosts, err, tc.single, tc.hosts)
		}
	}
	if _, _, err := repo.SplitHosts("u@tcp(a:1,,b:2)/db"); err == nil {
		t.Error("an empty address was accepted")
	}
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A DSN listing a dead host before the real one connects to the one that answers and is
// writable, and the store writes through it. (Read-only hosts and promotion are tested
// against a real primary and replica: make test-failover.)
func TestSeveralHostsFindTheWritableOne(t *testing.T) {
	t.Parallel()
	_, dsn := repotest.NewDB(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	multi := strings.Replace(cfg.FormatDSN(), "tcp("+cfg.Addr+")", "tcp("+deadAddr(t)+","+cfg.Addr+")", 1)
	ctx := context.Background()
	db, err := repo.Open(ctx, multi)
	if err != nil {
		t.Fatalf("open %s: %v", multi, err)
	}
	defer db.Close()
	s := repo.New(db, repo.Options{})
	if _, err := s.Reserve(ctx, reservation.Book(window("room", 1, 2))); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 1 {
		t.Fatalf("%d reservations stored, want 1", n)
	}
	var iso string
	if err := db.Get(&iso, "SELECT @@SESSION.tx_isolation"); err != nil {
		if err := db.Get(&iso, "SELECT @@SESSION.transaction_isolation"); err != nil {
			t.Fatal(err)
		}
	}
	if iso != "READ-COMMITTED" {
		t.Errorf("session isolation %s through the failover connector, want READ-COMMITTED", iso)
	}
}

// With no host answering, Open fails rather than waiting for one.
func TestNoLiveHostFailsOpen(t *testing.T) {
	t.Parallel()
	_, dsn := repotest.NewDB(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db, err := repo.Open(ctx, cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	multi := strings.Replace(cfg.FormatDSN(), "tcp("+cfg.Addr+")", "tcp("+deadAddr(t)+","+deadAddr(t)+")", 1)
	if _, err := repo.Open(ctx, multi); err == nil {
		t.Fatal("open with no live host succeeded")
	}
}
