package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	rsvjs "reservation/jetstream"
	"reservation/repo"
)

// exportCommand is `reservationd export status|reset [flags]`, the operator's view of the
// change feed's export to NATS JetStream and the way out of a halted one:
//
//	status  the export's recorded seq, and why it halted, if it did; the feed's bounds; with
//	        --nats-url, the stream's last message and whether its fingerprint is the
//	        database's change of that seq.
//	reset   deletes the stream (its history after the fork is not the database's) and the
//	        export's record; the replicas' exporter then creates the stream again from the
//	        oldest change stored, and consumers start again from there (docs/nats.md).
func exportCommand(ctx context.Context, out io.Writer, args []string) error {
	if len(args) == 0 || args[0] != "status" && args[0] != "reset" {
		return errors.New("usage: reservationd export status|reset [flags]")
	}
	sub := args[0]
	cfg, err := parseFlags(args[1:])
	if err != nil {
		return err
	}
	if cfg.MySQLDSN == "" {
		return usageError{errors.New("--mysql-dsn (RESERVATION_MYSQL_DSN) is required")}
	}
	if err := repo.CheckDSN(cfg.MySQLDSN); err != nil {
		return usageError{fmt.Errorf("--mysql-dsn: %w", err)}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	db, err := repo.Open(ctx, cfg.MySQLDSN)
	if err != nil {
		return err
	}
	defer db.Close()
	stream := cfg.NATS.Stream
	var js jetstream.JetStream
	if cfg.NATS.URLs != "" {
		o, err := exportOptions(cfg, os.Getenv)
		if err != nil {
			return err
		}
		nc, err := rsvjs.Connect(o.Conn)
		if err != nil {
			return err
		}
		defer nc.Close()
		if js, err = jetstream.New(nc); err != nil {
			return err
		}
	}
	if sub == "reset" {
		if js == nil {
			return errors.New("export reset needs --nats-url: it deletes the stream")
		}
		switch err := js.DeleteStream(ctx, stream); {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			fmt.Fprintf(out, "stream %s: none\n", stream)
		case err != nil:
			return fmt.Errorf("delete stream %s: %w", stream, err)
		default:
			fmt.Fprintf(out, "stream %s: deleted\n", stream)
		}
		if _, err := repo.ForgetExport(ctx, db, stream); err != nil {
			return err
		}
		fmt.Fprintf(out, "export %s: record deleted; the exporting replica creates the stream again from the oldest change stored\n", stream)
		return nil
	}
	states, err := repo.ExportStates(ctx, db)
	if err != nil {
		return err
	}
	changes := repo.NewChanges(db)
	first, last, err := changes.Bounds(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "feed: seqs %d to %d stored\n", first, last)
	found := false
	for _, s := range states {
		found = found || s.Name == stream
		state := "running"
		if s.Halted != "" {
			state = "HALTED: " + s.Halted
		}
		fmt.Fprintf(out, "export %s: exported through seq %d (%d behind); %s\n", s.Name, s.Seq, max(last, s.Seq)-s.Seq, state)
	}
	if !found {
		fmt.Fprintf(out, "export %s: never ran\n", stream)
	}
	if js == nil {
		return nil
	}
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		fmt.Fprintf(out, "stream %s: none\n", stream)
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	st := s.CachedInfo().State
	fmt.Fprintf(out, "stream %s: %d messages, seqs %d to %d\n", stream, st.Msgs, st.FirstSeq, st.LastSeq)
	if st.Msgs == 0 {
		return nil
	}
	m, err := s.GetMsg(ctx, st.LastSeq)
	if err != nil {
		return fmt.Errorf("stream %s: read seq %d: %w", stream, st.LastSeq, err)
	}
	c, err := changes.At(ctx, st.LastSeq)
	if err != nil {
		return err
	}
	switch fp := rsvjs.Fingerprint(m.Header); {
	case c == nil:
		fmt.Fprintf(out, "seq %d: in the stream, not in the database: they diverged; `reservationd export reset` starts the stream again from the database\n", st.LastSeq)
	case c.Fingerprint() != fp:
		fmt.Fprintf(out, "seq %d: the stream's fingerprint %016x is not the database's %016x: they diverged; `reservationd export reset` starts the stream again from the database\n", st.LastSeq, fp, c.Fingerprint())
	default:
		fmt.Fprintf(out, "seq %d: the stream's last message is the database's change (fingerprint %016x)\n", st.LastSeq, fp)
	}
	return nil
}
