// Package jstest reads an export's stream back and checks it against the database's feed:
// the checks every export test makes, in one place.
package jstest

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"reservation"
	rsvjs "reservation/jetstream"
	pb "reservation/proto/reservation/v1"
	"reservation/service"
)

// StreamMsgs reads every message of the stream, in stream order, through an ordered consumer.
// A read that fails (a JetStream API busy after a leader change answers "no responders") is
// tried again, 5 times at most.
func StreamMsgs(ctx context.Context, js jetstream.JetStream, stream string) ([]jetstream.Msg, error) {
	for attempt := 0; ; attempt++ {
		msgs, err := streamMsgs(ctx, js, stream)
		if err == nil || attempt == 4 || ctx.Err() != nil {
			return msgs, err
		}
		time.Sleep(time.Second)
	}
}

func streamMsgs(ctx context.Context, js jetstream.JetStream, stream string) ([]jetstream.Msg, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	n := int(info.State.Msgs)
	if n == 0 {
		return nil, nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	var out []jetstream.Msg
	for len(out) < n {
		batch, err := c.Fetch(min(n-len(out), 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		for m := range batch.Messages() {
			out = append(out, m)
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Check compares the stream's messages with the database's feed and returns every
// difference (at most about 20): the stream holds each stored change from its first sequence
// on exactly once (no gap, no duplicate), stream sequence i carries feed seq i with the same
// fingerprint, its subject is the change's, and its body is what Listen sends for it.
func Check(msgs []jetstream.Msg, feed []*reservation.Change, prefix string) []string {
	if len(msgs) == 0 || len(feed) == 0 {
		return []string{fmt.Sprintf("the stream holds %d messages, the feed %d changes", len(msgs), len(feed))}
	}
	var bad []string
	bySeq := map[uint64]*reservation.Change{}
	for _, c := range feed {
		bySeq[c.Seq] = c
	}
	first, err := msgs[0].Metadata()
	if err != nil {
		return []string{err.Error()}
	}
	from := first.Sequence.Stream
	last := feed[len(feed)-1].Seq
	if got := uint64(len(msgs)); from > last || got != last-from+1 {
		bad = append(bad, fmt.Sprintf("the stream holds %d messages from seq %d, the feed %d changes from there (to seq %d)", got, from, int64(last)-int64(from)+1, last))
	}
	seen := map[string]uint64{}
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		seq := md.Sequence.Stream
		var r pb.ListenResponse
		if err := proto.Unmarshal(m.Data(), &r); err != nil {
			bad = append(bad, fmt.Sprintf("stream seq %d: body: %v", seq, err))
			continue
		}
		if r.GetSeq() != seq {
			bad = append(bad, fmt.Sprintf("stream seq %d carries feed seq %d", seq, r.GetSeq()))
		}
		if prev, ok := seen[r.GetCursor()]; ok {
			bad = append(bad, fmt.Sprintf("stream seqs %d and %d carry the same change (feed seq %d)", prev, seq, r.GetSeq()))
		}
		seen[r.GetCursor()] = seq
		c := bySeq[seq]
		switch {
		case c == nil:
			bad = append(bad, fmt.Sprintf("stream seq %d: no such change in the feed", seq))
		case rsvjs.Fingerprint(m.Headers()) != c.Fingerprint():
			bad = append(bad, fmt.Sprintf("stream seq %d: fingerprint %016x, the feed's change %016x", seq, rsvjs.Fingerprint(m.Headers()), c.Fingerprint()))
		default:
			body, err := service.EncodeChange(c)
			var want pb.ListenResponse
			if err == nil {
				err = proto.Unmarshal(body, &want)
			}
			if err != nil || !proto.Equal(&r, &want) {
				bad = append(bad, fmt.Sprintf("stream seq %d: body is not Listen's response for the change", seq))
			}
			if m.Subject() != rsvjs.Subject(prefix, c) {
				bad = append(bad, fmt.Sprintf("stream seq %d: subject %s, want %s", seq, m.Subject(), rsvjs.Subject(prefix, c)))
			}
		}
		if len(bad) > 20 {
			return append(bad, "...")
		}
	}
	return bad
}
