package repo_test

import (
	"context"
	"strings"
	"testing"

	"reservation/repo"
)

// TestOpenBadDSNShowsTheForm: a DSN in another form (a URL, or host:port without tcp(…)) is
// refused before any connection, with an example of the form the driver reads. Needs no server.
func TestOpenBadDSNShowsTheForm(t *testing.T) {
	for _, dsn := range []string{
		"root@127.0.0.1:3306/reservation",
		"mysql://root@127.0.0.1:3306/reservation",
		"reservation",
		"root@tcp(db1:3306,)/reservation",
	} {
		db, err := repo.Open(context.Background(), dsn)
		if err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", dsn)
			continue
		}
		if !strings.Contains(err.Error(), "root@tcp(127.0.0.1:3306)/reservation") {
			t.Errorf("Open(%q): %v; want the example root@tcp(127.0.0.1:3306)/reservation", dsn, err)
		}
	}
}

// TestOpenUnreachableIsNotAboutGalera: a server that does not answer is a connection error
// naming its address; nothing in it suggests a Galera node. Needs no server: nothing listens
// on port 1.
func TestOpenUnreachableIsNotAboutGalera(t *testing.T) {
	db, err := repo.Open(context.Background(), "root@tcp(127.0.0.1:1)/reservation?timeout=2s")
	if err == nil {
		db.Close()
		t.Fatal("Open of a closed port succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "connect to mysql 127.0.0.1:1") || strings.Contains(strings.ToLower(msg), "galera") {
		t.Errorf("Open of a closed port: %q; want a connection error naming 127.0.0.1:1 and no Galera", msg)
	}
}
