package repo_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

// A server that refuses new connections because every allowed one is in use (here the
// account's MAX_USER_CONNECTIONS, error 1226; max_connections' 1040 and max_user_connections'
// 1203 are mapped alike) has run nothing: the call is UNAVAILABLE, which clients retry, not an
// internal error.
func TestTooManyConnectionsIsUnavailable(t *testing.T) {
	t.Parallel()
	root, dsn := repotest.NewDB(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := make([]byte, 4)
	rand.Read(b)
	user := "rsvconn_" + hex.EncodeToString(b)
	for _, q := range []string{
		fmt.Sprintf("CREATE USER '%s'@'%%' WITH MAX_USER_CONNECTIONS 3", user),
		fmt.Sprintf("GRANT ALL ON `%s`.* TO '%s'@'%%'", cfg.DBName, user),
	} {
		if _, err := root.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { root.ExecContext(context.Background(), fmt.Sprintf("DROP USER '%s'@'%%'", user)) })
	cfg.User, cfg.Passwd = user, ""
	db, err := repo.Open(ctx, cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Take every connection the account may have (Open's own are idle in the pool).
	var held []*sql.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for len(held) <= 3 {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Logf("connection %d refused: %v", len(held)+1, err)
			break
		}
		held = append(held, c)
	}
	if len(held) != 3 {
		t.Fatalf("held %d connections of an account limited to 3", len(held))
	}

	s := repo.New(db, repo.Options{})
	_, err = s.Reserve(ctx, reservation.Book(window("room", 0, 1)))
	if reservation.ErrorCode(err) != reservation.EUNAVAILABLE {
		t.Fatalf("Reserve with the account's connections all in use: %v (code %q), want %q", err, reservation.ErrorCode(err), reservation.EUNAVAILABLE)
	}
	held[0].Close()
	if _, err := s.Reserve(ctx, reservation.Book(window("room", 0, 1))); err != nil {
		t.Fatalf("Reserve once the connection is free again: %v", err)
	}
}
