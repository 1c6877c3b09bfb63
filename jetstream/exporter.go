package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"reservation"
	pb "reservation/proto/reservation/v1"
)

// Feed is the stored change feed: repo.Changes.
type Feed interface {
	// Read returns up to limit changes with after < seq <= through, in seq order.
	Read(ctx context.Context, after, through uint64, resourceID string, limit int) ([]*reservation.Change, error)
	// At returns the change stored with seq, or nil when there is none.
	At(ctx context.Context, seq uint64) (*reservation.Change, error)
	// Bounds returns the oldest and newest seq stored; 0, 0 when none is.
	Bounds(ctx context.Context) (first, last uint64, err error)
}

// Lease elects the one exporter and records its position: repo.Exporter.
type Lease interface {
	// Elect waits up to wait for the lease and reports whether it was won.
	Elect(ctx context.Context, wait time.Duration) (bool, error)
	// Record writes the export's position and why it halted ("" while it runs), extending
	// the lease; it fails once the lease is lost.
	Record(ctx context.Context, seq uint64, halted string) error
	// State reads the recorded position and halt reason, as any replica sees it.
	State(ctx context.Context) (seq uint64, halted string, err error)
	// Resign gives the lease up.
	Resign()
}

// The defaults of Options, which reservationd's flags show too.
const (
	DefaultStream        = "RESERVATION_CHANGES"
	DefaultSubjectPrefix = "reservation.changes"
	DefaultReplicas      = 3
	DefaultDuplicates    = 2 * time.Minute
	DefaultWindow        = 256
	DefaultAckWait       = 5 * time.Second
	DefaultPollInterval  = 20 * time.Millisecond
)

// Options configure an Exporter; a zero field takes its default.
type Options struct {
	Conn          ConnConfig
	Stream        string // the stream's name (DefaultStream)
	SubjectPrefix string // subjects are <prefix>.<resource>.<moved from> (Subject)
	// Replicas and Duplicates are the settings of a stream the exporter creates: its
	// replication factor and its duplicate window.
	Replicas   int
	Duplicates time.Duration
	// Window is how many publishes may wait for their acknowledgement at once.
	Window int
	// AckWait bounds the wait for a publish's acknowledgement; past it the publish is sent
	// again, with the same Nats-Msg-Id.
	AckWait time.Duration
	// PollInterval is how often the exporter looks for new changes while it is caught up.
	PollInterval time.Duration
	// Encode is the body of a change: its ListenResponse in protobuf (service.EncodeChange).
	Encode func(*reservation.Change) ([]byte, error)
	Logger *slog.Logger
	// Now is the clock of the lag in seconds; nil means time.Now.
	Now func() time.Time

	brk breakage // tests only: a fault to show the tests' checks can fail
}

// breakage is an exporter made wrong on purpose, for tests (break_on.go).
type breakage uint8

const (
	breakMsgID breakage = 1 << iota
	breakExpectedSeq
	breakFingerprint
)

// Exporter publishes the stored change feed to a JetStream stream while this replica holds the
// export's lease. Make one with New, then Run it.
type Exporter struct {
	feed  Feed
	lease Lease
	opts  Options
	log   *slog.Logger

	nc *nats.Conn
	js jetstream.JetStream

	leading                                         atomic.Bool
	exported                                        atomic.Uint64
	published, duplicates, wrongSeq, retries, halts atomic.Int64
	haltMu                                          sync.Mutex
	halted                                          string
}

// New returns an exporter of feed, elected through lease.
func New(feed Feed, lease Lease, opts Options) *Exporter {
	opts.Stream = orString(opts.Stream, DefaultStream)
	opts.SubjectPrefix = orString(opts.SubjectPrefix, DefaultSubjectPrefix)
	opts.Replicas = reservation.OrDefault(opts.Replicas, DefaultReplicas)
	opts.Duplicates = reservation.OrDefault(opts.Duplicates, DefaultDuplicates)
	opts.Window = reservation.OrDefault(opts.Window, DefaultWindow)
	opts.AckWait = reservation.OrDefault(opts.AckWait, DefaultAckWait)
	opts.PollInterval = reservation.OrDefault(opts.PollInterval, DefaultPollInterval)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.brk |= testBreak()
	return &Exporter{feed: feed, lease: lease, opts: opts, log: opts.Logger.With("stream", opts.Stream)}
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Stats are an exporter's figures.
type Stats struct {
	Leading    bool   // this replica exports now
	Exported   uint64 // newest seq the stream acknowledged to this replica
	Published  int64  // changes stored in the stream by this replica
	Duplicates int64  // publishes the stream acknowledged as duplicates: a retry found its message stored
	WrongSeq   int64  // publishes refused for not following the stream's last message
	Retries    int64  // publishes sent again after no acknowledgement came
	Halts      int64  // times the export halted for a divergence found by this replica
}

// Stats returns the exporter's figures.
func (x *Exporter) Stats() Stats {
	return Stats{
		Leading: x.leading.Load(), Exported: x.exported.Load(), Published: x.published.Load(),
		Duplicates: x.duplicates.Load(), WrongSeq: x.wrongSeq.Load(), Retries: x.retries.Load(), Halts: x.halts.Load(),
	}
}

// Lag is how far the export is behind the stored feed, as any replica can read it from the
// database: changes stored but not exported, and the age of the oldest of them (0 when none
// waits). Halted is why the export stopped; empty while it runs.
type Lag struct {
	Changes uint64
	Age     time.Duration
	Halted  string
}

// Lag reads the export's lag from the database.
func (x *Exporter) Lag(ctx context.Context) (Lag, error) {
	seq, halted, err := x.lease.State(ctx)
	if err != nil {
		return Lag{}, err
	}
	_, last, err := x.feed.Bounds(ctx)
	if err != nil {
		return Lag{}, err
	}
	l := Lag{Halted: halted}
	if last > seq {
		l.Changes = last - seq
		c, err := x.feed.At(ctx, seq+1)
		if err != nil {
			return Lag{}, err
		}
		if c != nil {
			l.Age = max(x.opts.Now().Sub(c.CommittedAt), 0)
		}
	}
	return l, nil
}

// errHalted ends a term whose export halted; errResync one that must read the stream's last
// message again before it goes on.
var (
	errHalted = errors.New("export halted")
	errResync = errors.New("the stream refused a publish that did not follow its last message")
)

// haltedRecheck is how long a replica that found the export halted waits before it looks
// again (an operator may have reset it: reservationd export reset).
const haltedRecheck = 10 * time.Second

// Run competes for the export's lease until ctx ends, and exports while it holds it.
func (x *Exporter) Run(ctx context.Context) {
	defer func() {
		if x.nc != nil {
			x.nc.Close()
		}
	}()
	wait := x.opts.PollInterval
	for ctx.Err() == nil {
		won, err := x.lease.Elect(ctx, time.Second)
		if err != nil {
			if ctx.Err() == nil {
				x.log.WarnContext(ctx, "export election failed", "err", err)
			}
			wait = pause(ctx, wait)
			continue
		}
		if !won {
			continue
		}
		x.leading.Store(true)
		x.log.InfoContext(ctx, "exporting the change feed", "servers", x.opts.Conn.URLs, "subject_prefix", x.opts.SubjectPrefix)
		err = x.lead(ctx)
		x.lease.Resign()
		x.leading.Store(false)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, errHalted):
			reservation.Sleep(ctx, haltedRecheck)
		default:
			x.log.WarnContext(ctx, "gave up exporting the change feed", "err", err)
			wait = pause(ctx, wait)
		}
	}
}

// pause sleeps d, and returns the next wait after a failure: twice d, at most 5s.
func pause(ctx context.Context, d time.Duration) time.Duration {
	reservation.Sleep(ctx, d)
	return min(2*d, 5*time.Second)
}

// lead exports while the lease holds: it finds where the stream ends, checks it, and
// publishes from there, again after each refusal.
func (x *Exporter) lead(ctx context.Context) error {
	if err := x.connect(); err != nil {
		return err
	}
	for {
		next, fp, err := x.resume(ctx)
		if err != nil {
			return err
		}
		err = x.publishFrom(ctx, next, fp)
		if !errors.Is(err, errResync) {
			return err
		}
	}
}

// connect connects to the servers once; the connection reconnects by itself from then on.
func (x *Exporter) connect() error {
	if x.nc != nil && !x.nc.IsClosed() {
		return nil
	}
	c := x.opts.Conn
	if c.Name == "" {
		c.Name = "reservationd exporter"
	}
	nc, err := Connect(c)
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(x.opts.Window), jetstream.WithPublishAsyncTimeout(x.opts.AckWait))
	if err != nil {
		nc.Close()
		return fmt.Errorf("jetstream: %w", err)
	}
	x.nc, x.js = nc, js
	return nil
}

// resume returns the seq the stream expects next, and the fingerprint of the change before it
// (0 when none), after checking that the stream's last message is the database's change of
// that seq. A stream that is missing is created, its first sequence the next change to export.
func (x *Exporter) resume(ctx context.Context) (uint64, uint64, error) {
	recorded, halted, err := x.lease.State(ctx)
	if err != nil {
		return 0, 0, err
	}
	if halted != "" {
		x.setHalted(halted)
		x.log.ErrorContext(ctx, "the export is halted: nothing is published until an operator resolves it (reservationd export status, then export reset)", "why", halted)
		return 0, 0, errHalted
	}
	x.setHalted("")
	stream, err := x.js.Stream(ctx, x.opts.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return x.create(ctx, recorded+1)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s: %w", x.opts.Stream, err)
	}
	info := stream.CachedInfo()
	if err := x.checkConfig(info.Config); err != nil {
		return 0, 0, x.halt(ctx, recorded, err.Error())
	}
	if info.State.Msgs == 0 {
		// An empty stream goes on at its first sequence.
		next := info.State.FirstSeq
		first, last, err := x.feed.Bounds(ctx)
		if err != nil {
			return 0, 0, err
		}
		if first > next || last+1 < next {
			return 0, 0, x.halt(ctx, recorded, fmt.Sprintf("the empty stream starts at seq %d, but the database stores seqs %d to %d", next, first, last))
		}
		return next, 0, nil
	}
	last := info.State.LastSeq
	msg, err := stream.GetMsg(ctx, last)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s: read its last message, seq %d: %w", x.opts.Stream, last, err)
	}
	c, err := x.feed.At(ctx, last)
	if err != nil {
		return 0, 0, err
	}
	if c == nil {
		first, stored, err := x.feed.Bounds(ctx)
		if err != nil {
			return 0, 0, err
		}
		if last > stored {
			return 0, 0, x.halt(ctx, recorded, fmt.Sprintf("the stream's last message is seq %d, but the database's feed ends at seq %d: the stream holds changes the database lost (a lossy failover?)", last, stored))
		}
		return 0, 0, x.halt(ctx, recorded, fmt.Sprintf("the stream's last message is seq %d, which the database no longer stores (its oldest is seq %d)", last, first))
	}
	got := Fingerprint(msg.Header)
	if got != c.Fingerprint() && x.opts.brk&breakFingerprint == 0 {
		return 0, 0, x.halt(ctx, recorded, fmt.Sprintf("seq %d: the stream's message has fingerprint %s, the database's change %s: the database's feed and the stream tell different histories from there on (a lossy failover re-stamped seqs, or something else published to the stream)",
			last, fingerprint(got), fingerprint(c.Fingerprint())))
	}
	x.exported.Store(last)
	if err := x.lease.Record(ctx, last, ""); err != nil {
		return 0, 0, err
	}
	return last + 1, got, nil
}

// create creates the stream, its first sequence first.
func (x *Exporter) create(ctx context.Context, first uint64) (uint64, uint64, error) {
	_, err := x.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        x.opts.Stream,
		Description: "the reservation change feed: stream sequence = the feed's seq",
		Subjects:    []string{x.opts.SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    x.opts.Replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Duplicates:  x.opts.Duplicates,
		FirstSeq:    max(first, 1),
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	})
	if err != nil {
		return 0, 0, fmt.Errorf("create stream %s (first seq %d): %w", x.opts.Stream, first, err)
	}
	x.log.InfoContext(ctx, "created the export stream", "first_seq", max(first, 1), "replicas", x.opts.Replicas)
	return max(first, 1), 0, nil
}

// checkConfig says what of an existing stream's settings the export cannot work with.
func (x *Exporter) checkConfig(c jetstream.StreamConfig) error {
	var errs []error
	want := x.opts.SubjectPrefix + ".>"
	if len(c.Subjects) != 1 || c.Subjects[0] != want {
		errs = append(errs, fmt.Errorf("its subjects are %q, the export's %q", c.Subjects, want))
	}
	if !c.DenyDelete || !c.DenyPurge {
		errs = append(errs, errors.New("it allows deleting or purging messages (deny_delete and deny_purge must be set)"))
	}
	if c.Storage != jetstream.FileStorage {
		errs = append(errs, errors.New("its storage is not file"))
	}
	if c.MaxMsgs > 0 || c.MaxBytes > 0 || c.MaxAge > 0 {
		x.log.Warn("the export stream has limits: consumers cannot replay what they drop", "max_msgs", c.MaxMsgs, "max_bytes", c.MaxBytes, "max_age", c.MaxAge)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stream %s cannot hold the export: %w", x.opts.Stream, err)
	}
	return nil
}

// halt records that the export stopped and why, for every replica to see (health, metrics),
// logs it at ERROR, and returns errHalted.
func (x *Exporter) halt(ctx context.Context, exported uint64, why string) error {
	x.halts.Add(1)
	x.setHalted(why)
	x.log.ErrorContext(ctx, "export halted: nothing more is published until an operator resolves it (reservationd export status, then reservationd export reset)", "why", why)
	if err := x.lease.Record(ctx, exported, why); err != nil {
		return fmt.Errorf("%w (not recorded: %w)", errHalted, err)
	}
	return errHalted
}

func (x *Exporter) setHalted(why string) {
	x.haltMu.Lock()
	x.halted = why
	x.haltMu.Unlock()
}

// Halted is why this replica found the export halted; empty when it did not.
func (x *Exporter) Halted() string {
	x.haltMu.Lock()
	defer x.haltMu.Unlock()
	return x.halted
}

const readBatch = 1000

// publishFrom publishes the stored changes from seq next on, in order, a window of them in
// flight at once, until ctx ends or something fails. prevFP is the fingerprint of the change
// at next-1 (0 when not known): each read takes that change again and checks it is still the
// one exported, so a feed that a failover re-stamped is found before anything of it is sent.
func (x *Exporter) publishFrom(ctx context.Context, next, prevFP uint64) error {
	lastRecord := time.Now()
	for {
		after := next - 1
		if after > 0 {
			after--
		}
		cs, err := x.feed.Read(ctx, after, math.MaxUint64, "", readBatch+1)
		if err != nil {
			return err
		}
		if next > 1 {
			if len(cs) == 0 || cs[0].Seq != next-1 {
				_, last, err := x.feed.Bounds(ctx)
				if err != nil {
					return err
				}
				return x.halt(ctx, next-1, fmt.Sprintf("seq %d, exported, was not in the database's feed when read (it ends at seq %d now): the database lost changes the stream holds (a lossy failover?)", next-1, last))
			}
			if fp := cs[0].Fingerprint(); prevFP != 0 && fp != prevFP && x.opts.brk&breakFingerprint == 0 {
				return x.halt(ctx, next-1, fmt.Sprintf("seq %d now names another change in the database (fingerprint %s) than the one exported (%s): the feed was re-stamped (a lossy failover?)", next-1, fingerprint(fp), fingerprint(prevFP)))
			}
			cs = cs[1:]
		}
		for i, c := range cs {
			if c.Seq != next+uint64(i) {
				// The feed is stamped without gaps and pruned from its oldest end only: a
				// gap means it was rewritten under the export.
				return x.halt(ctx, next-1, fmt.Sprintf("the database's feed has no seq %d (the next stored is %d): it was rewritten (a lossy failover?)", next+uint64(i), c.Seq))
			}
		}
		if len(cs) == 0 {
			if time.Since(lastRecord) > time.Second {
				if err := x.lease.Record(ctx, next-1, ""); err != nil {
					return err
				}
				lastRecord = time.Now()
			}
			if err := reservation.Sleep(ctx, x.opts.PollInterval); err != nil {
				return err
			}
			continue
		}
		acked, err := x.publish(ctx, cs)
		if acked != nil {
			next, prevFP = acked.Seq+1, acked.Fingerprint()
			x.exported.Store(acked.Seq)
			if rerr := x.lease.Record(ctx, acked.Seq, ""); rerr != nil {
				return rerr
			}
			lastRecord = time.Now()
		}
		if err != nil {
			return err
		}
	}
}

// errNoAck says a publish got no acknowledgement: it is sent again, with its Nats-Msg-Id.
var errNoAck = errors.New("no acknowledgement")

// publish sends cs, each expecting the one before it as the stream's last message, and waits
// for their acknowledgements in order. It returns the last change acknowledged (nil if none)
// and errResync once the stream refused one for not following its last message. A publish
// without an acknowledgement is sent again, with the ones after it, while the lease lasts: a
// retry of a stored message is acknowledged as a duplicate of it within the duplicate window,
// and refused (errResync) past it.
func (x *Exporter) publish(ctx context.Context, cs []*reservation.Change) (*reservation.Change, error) {
	var acked *reservation.Change
	for attempt := 0; len(cs) > 0; attempt++ {
		if attempt > 0 {
			x.retries.Add(int64(len(cs)))
			if err := reservation.Sleep(ctx, min(time.Duration(attempt)*100*time.Millisecond, time.Second)); err != nil {
				return acked, err
			}
			// The lease must still be ours before sending again.
			if err := x.lease.Record(ctx, cs[0].Seq-1, ""); err != nil {
				return acked, err
			}
		}
		n, err := x.publishOnce(ctx, cs)
		if n > 0 {
			acked = cs[n-1]
			cs = cs[n:]
		}
		if !errors.Is(err, errNoAck) {
			return acked, err
		}
		x.log.WarnContext(ctx, "publish not acknowledged: sending again", "seq", cs[0].Seq, "err", err)
	}
	return acked, nil
}

// publishOnce sends cs and returns how many of them, from the first, were acknowledged.
func (x *Exporter) publishOnce(ctx context.Context, cs []*reservation.Change) (int, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(cs))
	var sendErr error
	for _, c := range cs {
		m, err := x.message(c)
		if err != nil {
			sendErr = err
			break
		}
		f, err := x.js.PublishMsgAsync(m)
		if err != nil {
			sendErr = fmt.Errorf("%w: publish seq %d: %w", errNoAck, c.Seq, err)
			break
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		c := cs[i]
		select {
		case <-ctx.Done():
			return i, ctx.Err()
		case ack := <-f.Ok():
			if ack.Sequence != c.Seq && x.opts.brk&breakExpectedSeq == 0 {
				return i, x.halt(ctx, c.Seq-1, fmt.Sprintf("the stream stored seq %d as its message %d", c.Seq, ack.Sequence))
			}
			if ack.Duplicate {
				x.duplicates.Add(1)
			} else {
				x.published.Add(1)
			}
		case err := <-f.Err():
			var api *jetstream.APIError
			if errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
				x.wrongSeq.Add(1)
				x.log.WarnContext(ctx, "the stream refused a publish that did not follow its last message: reading its last message again", "seq", c.Seq, "err", err)
				return i, errResync
			}
			if api != nil {
				// Another refusal (a duplicate still in flight, a leader change): send again.
				return i, fmt.Errorf("%w: seq %d: %w", errNoAck, c.Seq, err)
			}
			return i, fmt.Errorf("%w: seq %d: %w", errNoAck, c.Seq, err)
		}
	}
	return len(futures), sendErr
}

// message is change c as published, with the headers that fence it.
func (x *Exporter) message(c *reservation.Change) (*nats.Msg, error) {
	body, err := x.opts.Encode(c)
	if err != nil {
		return nil, fmt.Errorf("encode change %d: %w", c.Seq, err)
	}
	m := message(x.opts.SubjectPrefix, c, body, pb.ReservationUpdateType(c.Op).String())
	if x.opts.brk&breakMsgID == 0 {
		m.Header.Set(jetstream.MsgIDHeader, strconv.FormatUint(c.Seq, 10))
	}
	if x.opts.brk&breakExpectedSeq == 0 {
		m.Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(c.Seq-1, 10))
	}
	return m, nil
}
