// Command natsconsumer follows one resource's changes on the NATS JetStream stream that
// reservationd exports its change feed to (docs/nats.md), and resumes where it stopped: it
// keeps the seq it last applied in a file, and since the stream's sequence is the feed's seq,
// it asks the stream to start right after it.
//
//	natsconsumer --nats nats://127.0.0.1:4222 --resource room-1 --state room-1.seq
//
// Each change is printed as a line; a real consumer would apply it to its own store, and
// save the seq in the same transaction.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	rsvjs "reservation/jetstream"
	pb "reservation/proto/reservation/v1"
)

func main() {
	urls := flag.String("nats", nats.DefaultURL, "NATS servers, comma-separated")
	stream := flag.String("stream", rsvjs.DefaultStream, "the stream reservationd exports to")
	prefix := flag.String("prefix", rsvjs.DefaultSubjectPrefix, "its subject prefix")
	resource := flag.String("resource", "", "the resource to follow (required)")
	state := flag.String("state", "", "file keeping the seq last applied (required)")
	flag.Parse()
	if *resource == "" || *state == "" {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	nc, err := nats.Connect(*urls)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	last, err := readSeq(*state)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	err = Follow(ctx, js, *stream, *prefix, *resource, last, func(c *pb.ListenResponse) error {
		fmt.Printf("%d %s %s %s\n", c.GetSeq(), c.GetOp(), c.GetReservation().GetId(), c.GetReservation().GetResourceId())
		return os.WriteFile(*state, []byte(strconv.FormatUint(c.GetSeq(), 10)), 0o644)
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func readSeq(file string) (uint64, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// Follow calls apply with each change of resource on the stream after seq lastApplied, in seq
// order, until ctx ends or apply fails: the resource's own changes and the moves away from it
// (its two filter subjects), as Listen with that resource gives them. An ordered consumer
// needs no state on the server; the consumer's own is lastApplied.
func Follow(ctx context.Context, js jetstream.JetStream, stream, prefix, resource string, lastApplied uint64, apply func(*pb.ListenResponse) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: rsvjs.FilterSubjects(prefix, resource),
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    lastApplied + 1,
	})
	if err != nil {
		return fmt.Errorf("consumer on %s: %w", stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	go func() { <-ctx.Done(); it.Stop() }() // ends with Follow: ctx is cancelled on return
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		var c pb.ListenResponse
		if err := proto.Unmarshal(m.Data(), &c); err != nil {
			return fmt.Errorf("%s: %w", m.Subject(), err)
		}
		// The stream's sequence is the feed's seq: a message that says otherwise is not the
		// feed's, and applying it would be a lie.
		if md, err := m.Metadata(); err != nil || md.Sequence.Stream != c.GetSeq() {
			return fmt.Errorf("%s: stream sequence is not the change's seq %d", m.Subject(), c.GetSeq())
		}
		if err := apply(&c); err != nil {
			return err
		}
	}
}
