package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	rsvjs "reservation/jetstream"
	pb "reservation/proto/reservation/v1"
)

// natsFlags are listen's way to the changes' NATS JetStream stream (--from-nats).
type natsFlags struct {
	urls, stream, prefix, creds string
}

func (n *natsFlags) bind(f *pflag.FlagSet) {
	f.StringVar(&n.urls, "from-nats", "", "read the changes from the NATS JetStream stream at these servers (comma-separated URLs) instead of a replica")
	f.StringVar(&n.stream, "nats-stream", rsvjs.DefaultStream, "the stream reservationd exports to (its --nats-stream)")
	f.StringVar(&n.prefix, "nats-subject-prefix", rsvjs.DefaultSubjectPrefix, "the subjects' prefix (reservationd's --nats-subject-prefix)")
	f.StringVar(&n.creds, "nats-creds", "", "NATS credentials file")
}

// listen prints the stream's changes of resource (all when empty) after seq after (from now
// on when negative) until ctx ends, through an ordered consumer: the stream's sequence is the
// feed's seq, so --after means what it means for Listen.
func (n *natsFlags) listen(ctx context.Context, resource string, after int64, print func(*pb.ListenResponse)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the goroutine below
	nc, err := rsvjs.Connect(rsvjs.ConnConfig{URLs: strings.Split(n.urls, ","), Name: "rsvctl listen", CredsFile: n.creds})
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: rsvjs.FilterSubjects(n.prefix, resource), DeliverPolicy: jetstream.DeliverNewPolicy}
	if after >= 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, uint64(after)+1
	}
	cons, err := js.OrderedConsumer(ctx, n.stream, cfg)
	if err != nil {
		return fmt.Errorf("stream %s: %w", n.stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	go func() { <-ctx.Done(); it.Stop() }()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		var r pb.ListenResponse
		if err := proto.Unmarshal(m.Data(), &r); err != nil {
			return fmt.Errorf("stream %s: message %s: %w", n.stream, m.Subject(), err)
		}
		print(&r)
	}
}
