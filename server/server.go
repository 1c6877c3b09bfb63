// Package server is one reservationd replica in a process: the gRPC API with health and
// reflection, the HTTP gateway, and the background loops the API needs (the change feed, the
// conflict cache's follower, the reaper of lapsed holds, and the watchers of the database and
// the feed). cmd/reservationd runs one from its flags; the service tests build their replicas
// with it, so that the wiring exists once.
//
// A Daemon owns every goroutine it starts: Close returns only after each has ended.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/test/bufconn"

	"reservation"
	"reservation/cache"
	"reservation/gateway"
	"reservation/jetstream"
	"reservation/lock"
	"reservation/metrics"
	"reservation/queue"
	"reservation/readindex"
	"reservation/repo"
	"reservation/service"
	"reservation/telemetry"
)

// The defaults of Options, which reservationd's flags show too.
const (
	DefaultGRPCAddr        = "127.0.0.1:50051"
	DefaultHTTPAddr        = "127.0.0.1:8080"
	DefaultDrain           = 20 * time.Second
	DefaultMaxMsgSize      = 4 << 20
	DefaultMaxStreams      = 1000
	DefaultDefaultDeadline = 30 * time.Second
)

// FeedHealthService is the gRPC health service name that reports the change feed: NOT_SERVING
// while it is stalled (queue.Queue.Stalled). The unnamed service stays about serving writes.
const FeedHealthService = "reservation.v1.Feed"

// ExportHealthService is the gRPC health service name that reports the change feed's export
// to NATS JetStream, when one is configured: NOT_SERVING once it halted (the database's feed
// and the stream tell different histories; reservationd export status says why).
const ExportHealthService = "reservation.v1.Export"

// Options configure a Daemon. A zero field takes its default; the packages' own Options take
// theirs in their constructors.
type Options struct {
	GRPCAddr string // listen address; ":0" ports are chosen by the system (see GRPCAddr)
	HTTPAddr string
	// Drain bounds Close's wait for in-flight calls; past it they are cut.
	Drain time.Duration
	// ReapInterval is how often lapsed holds are removed (default repo.DefaultReapInterval).
	ReapInterval    time.Duration
	MaxMsgSize      int           // largest gRPC message received or sent, in bytes
	MaxStreams      int           // most concurrent calls on one client connection
	DefaultDeadline time.Duration // deadline of a unary call that comes without one
	Pprof           bool          // serve Go's profiles under /debug/pprof/ on the HTTP port
	// TLS, when set, serves both ports over TLS (with client certificates if it asks for them).
	TLS *tls.Config
	// Auth are server options of an authenticator (auth.Auth.ServerOptions), put after the
	// metrics' and before the service's own on both gRPC servers.
	Auth []grpc.ServerOption

	Feed queue.Options
	// Store configures the store; its Locker, Committed and Taken are set by New. On a Galera
	// node its OneStatementPerTrip must be set (repo.Galera tells).
	Store repo.Options
	API   service.Options
	// Cache configures the conflict cache; MaxEntries 0 means no cache.
	Cache cache.Options
	// ReadIndex configures the in-memory read index that answers READ_YOUR_WRITES and BOUNDED
	// reads; MaxReservations 0 means no index (every read goes to the database).
	ReadIndex readindex.Options
	// Export, when set, exports the change feed to a NATS JetStream stream (package
	// jetstream); its Encode and Logger are set by New.
	Export *jetstream.Options

	Logger *slog.Logger
	// Tracing, when set and on, traces every RPC and what it does (package telemetry).
	Tracing *telemetry.Tracing
}

// Daemon is a replica's servers and loops. Make one with New, then Start it, then Close it.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	db      *sqlx.DB
	locker  reservation.Locker
	metrics *metrics.Metrics
	feed    *queue.Queue
	taken   *cache.Cache        // nil without a cache
	index   *readindex.Index    // nil without a read index
	export  *jetstream.Exporter // nil without an export
	store   *repo.Store

	grpc    *grpc.Server // the API's port
	inner   *grpc.Server // the gateway's in-memory way to the API
	health  *health.Server
	web     *http.Server
	conn    *grpc.ClientConn
	mem     *bufconn.Listener
	lis     net.Listener
	httpLis net.Listener

	ready    atomic.Bool // false once Close has begun: /readyz answers 503
	served   chan error  // the first error of a server that stopped by itself
	stopFeed context.CancelFunc
	stop     context.CancelFunc // the other loops
	feedDone sync.WaitGroup
	loops    sync.WaitGroup
	closing  sync.Once

	exportLag atomic.Pointer[jetstream.Lag] // the export's lag, as watchExport read it last
}

// New builds a replica on db, whose writers queue on locker (nil: the database alone
// serialises them), and binds its two ports. ctx bounds only what New itself does. When it
// fails, it has closed everything it made (the caller's db and locker are left open).
func New(ctx context.Context, db *sqlx.DB, locker reservation.Locker, opts Options) (_ *Daemon, err error) {
	opts = withDefaults(opts)
	log := opts.Logger
	d := &Daemon{opts: opts, log: log, db: db, locker: locker, metrics: metrics.New(), served: make(chan error, 3)}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.release())
		}
	}()

	opts.Feed.Logger = orLogger(opts.Feed.Logger, log)
	opts.Feed.Marks = opts.Feed.Marks || opts.ReadIndex.MaxReservations > 0 // the read index's view is as of them
	d.feed = queue.New(repo.NewChanges(db), repo.NewLeader(db), opts.Feed)
	storeOpts := opts.Store
	storeOpts.Logger = orLogger(storeOpts.Logger, log)
	if locker != nil {
		storeOpts.Locker = d.metrics.Locker(locker)
	}
	storeOpts.Committed = d.feed.Nudge
	if opts.Cache.MaxEntries > 0 {
		cacheOpts := opts.Cache
		cacheOpts.Logger = orLogger(cacheOpts.Logger, log)
		d.taken = cache.New(cacheOpts)
		storeOpts.Taken = d.taken
	}
	d.store = repo.New(db, storeOpts)
	if opts.Export != nil {
		xo := *opts.Export
		xo.Encode, xo.Logger = service.EncodeChange, orLogger(xo.Logger, log)
		d.export = jetstream.New(repo.NewChanges(db), repo.NewExporter(db, orString(xo.Stream, jetstream.DefaultStream)), xo)
	}
	d.exportLag.Store(&jetstream.Lag{})
	d.exportMetrics()

	if opts.Tracing == nil {
		opts.Tracing = telemetry.Off()
		d.opts.Tracing = opts.Tracing
	}
	// Tracing first: the RPC's span covers the other interceptors.
	serverOpts := append(opts.Tracing.ServerOptions(), d.serverOptions()...)
	apiOpts := opts.API
	apiOpts.Logger = orLogger(apiOpts.Logger, log)
	// Every capability of the API, named here: a store wrapped for metrics, say, would have
	// to keep them all to compile, and Check refuses a missing one now rather than answering
	// UNIMPLEMENTED later.
	caps := service.All(d.store, d.feed)
	if err := caps.Check(); err != nil {
		return nil, err
	}
	if opts.ReadIndex.MaxReservations > 0 {
		ro := opts.ReadIndex
		ro.Logger = orLogger(ro.Logger, log)
		d.index = readindex.New(d.store, d.feed, ro)
		caps.Index = d.index
		d.store.UseIndex(d.index) // a pool call's first try picks its units there
		d.indexMetrics()
	}
	api := service.New(caps, apiOpts)
	d.grpc = grpc.NewServer(append(serverOpts, grpc.Creds(transportCredentials(opts.TLS)))...)
	api.Register(d.grpc)
	d.health = health.NewServer()
	healthpb.RegisterHealthServer(d.grpc, d.health)
	reflection.Register(d.grpc)

	// The HTTP gateway reaches the API through an in-memory connection to a second gRPC server
	// with the same interceptors: it needs no port, and no client certificate of its own.
	d.inner = grpc.NewServer(serverOpts...)
	api.Register(d.inner)
	d.mem = bufconn.Listen(1 << 20)
	d.conn, err = grpc.NewClient("passthrough:///gateway", append(opts.Tracing.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return d.mem.DialContext(ctx) }),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(opts.MaxMsgSize)))...)
	if err != nil {
		return nil, err
	}
	handler, err := gateway.New(ctx, gateway.Options{Conn: d.conn, Metrics: d.metrics.Handler(), Ready: d.readyz, FeedReady: d.feed.Stalled, Profile: opts.Pprof})
	if err != nil {
		return nil, err
	}
	d.web = &http.Server{Handler: opts.Tracing.HTTP(handler), TLSConfig: opts.TLS, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}

	if d.lis, err = net.Listen("tcp", opts.GRPCAddr); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", opts.GRPCAddr, err)
	}
	if d.httpLis, err = net.Listen("tcp", opts.HTTPAddr); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", opts.HTTPAddr, err)
	}
	return d, nil
}

// release frees what New made of a Daemon that never started, whatever New got to: the
// gateway's connection and in-memory listener, the ports, the gRPC servers. It returns what
// failed to close.
func (d *Daemon) release() error {
	var errs []error
	if d.conn != nil {
		errs = append(errs, d.conn.Close())
	}
	if d.mem != nil {
		errs = append(errs, closeListener("the gateway's in-memory listener", d.mem))
	}
	if d.lis != nil {
		errs = append(errs, closeListener("the gRPC port", d.lis))
	}
	if d.httpLis != nil {
		errs = append(errs, closeListener("the HTTP port", d.httpLis))
	}
	for _, g := range []*grpc.Server{d.grpc, d.inner} {
		if g != nil {
			g.Stop()
		}
	}
	return errors.Join(errs...)
}

// closeListener closes l, which what; one already closed (by a server's Stop) is no failure.
func closeListener(what string, l net.Listener) error {
	if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close %s: %w", what, err)
	}
	return nil
}

func withDefaults(o Options) Options {
	if o.GRPCAddr == "" {
		o.GRPCAddr = DefaultGRPCAddr
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = DefaultHTTPAddr
	}
	o.Drain = reservation.OrDefault(o.Drain, DefaultDrain)
	o.ReapInterval = reservation.OrDefault(o.ReapInterval, repo.DefaultReapInterval)
	o.MaxMsgSize = reservation.OrDefault(o.MaxMsgSize, DefaultMaxMsgSize)
	o.MaxStreams = reservation.OrDefault(o.MaxStreams, DefaultMaxStreams)
	o.DefaultDeadline = reservation.OrDefault(o.DefaultDeadline, DefaultDefaultDeadline)
	o.Logger = orLogger(o.Logger, slog.Default())
	return o
}

func orLogger(l, def *slog.Logger) *slog.Logger {
	if l == nil {
		return def
	}
	return l
}

// GRPCAddr is the address the API listens on; HTTPAddr the gateway's.
func (d *Daemon) GRPCAddr() string { return d.lis.Addr().String() }

// HTTPAddr is the address the HTTP gateway listens on.
func (d *Daemon) HTTPAddr() string { return d.httpLis.Addr().String() }

// Store is the replica's store, Feed its change feed, Cache its conflict cache (nil without).
func (d *Daemon) Store() *repo.Store { return d.store }

// Feed is the replica's change feed.
func (d *Daemon) Feed() *queue.Queue { return d.feed }

// Cache is the replica's conflict cache; nil when Options.Cache.MaxEntries is 0.
func (d *Daemon) Cache() *cache.Cache { return d.taken }

// Index is the replica's read index; nil when Options.ReadIndex.MaxReservations is 0.
func (d *Daemon) Index() *readindex.Index { return d.index }

// indexMetrics makes the read index's figures into metrics.
func (d *Daemon) indexMetrics() {
	x, m := d.index, d.metrics
	m.Gauge("readindex_reservations", "Live reservations the read index holds.", func() float64 { return float64(x.Stats().Reservations) })
	m.Gauge("readindex_ready", "1 while the read index is current and answers reads.", func() float64 {
		if x.Stats().Ready {
			return 1
		}
		return 0
	})
	m.Gauge("readindex_applied_seq", "The feed seq the read index applied last.", func() float64 { return float64(x.Stats().Applied) })
	m.Counter("readindex_served_total", "Reads the read index answered.", func() float64 { return float64(x.Stats().Served) })
	m.Counter("readindex_overflows_total", "Times the read index held more than its limit and let go.", func() float64 { return float64(x.Stats().Overflows) })
}

// Failed delivers the error of a server that stopped by itself, before Close.
func (d *Daemon) Failed() <-chan error { return d.served }

// Start runs the servers and the loops until Close.
func (d *Daemon) Start() {
	d.ready.Store(true)
	feedCtx, stopFeed := context.WithCancel(d.opts.Tracing.Context(context.Background()))
	ctx, stop := context.WithCancel(context.Background())
	d.stopFeed, d.stop = stopFeed, stop
	d.feedDone.Go(func() { d.feed.Run(feedCtx) })
	if d.taken != nil {
		d.loops.Go(func() { d.taken.Follow(feedCtx, d.feed) })
	}
	if d.index != nil {
		d.loops.Go(func() { d.index.Run(feedCtx) })
	}
	d.loops.Go(func() { d.store.RunReaper(ctx, d.opts.ReapInterval) })
	d.loops.Go(func() { d.watchDatabase(ctx) })
	cacheCurrent := func(bool) {}
	if d.taken != nil {
		cacheCurrent = d.taken.SetCurrent
	}
	d.loops.Go(func() { d.watchFeed(ctx, cacheCurrent) })
	if d.export != nil {
		d.feedDone.Go(func() { d.export.Run(feedCtx) })
		d.loops.Go(func() { d.watchExport(ctx) })
	}
	d.loops.Go(func() { d.inner.Serve(d.mem) })
	d.loops.Go(func() { d.failed(d.grpc.Serve(d.lis)) })
	d.loops.Go(func() {
		if d.opts.TLS != nil {
			d.failed(d.web.ServeTLS(d.httpLis, "", ""))
		} else {
			d.failed(d.web.Serve(d.httpLis))
		}
	})
	d.log.Info("serving", "grpc_addr", d.GRPCAddr(), "http_addr", d.HTTPAddr(),
		"tls", d.opts.TLS != nil, "client_certs", d.opts.TLS != nil && d.opts.TLS.ClientCAs != nil, "auth", len(d.opts.Auth) > 0)
}

func (d *Daemon) failed(err error) {
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
		d.served <- fmt.Errorf("serve: %w", err)
	}
}

// readyz is /readyz's check: the database answers, and Close has not begun.
func (d *Daemon) readyz(ctx context.Context) error {
	if !d.ready.Load() {
		return errors.New("shutting down")
	}
	return d.db.PingContext(ctx)
}

// Close stops the replica, in this order:
//  1. readiness fails: /readyz answers 503 and every health service NOT_SERVING, so that load
//     balancers send no new calls;
//  2. the change feed stops, which ends each Listen stream with the seq to resume after (they
//     never end by themselves), then HTTP and gRPC drain together, bounded by Options.Drain,
//     past which the calls left are cut;
//  3. the loops stop (cache follower, reaper, database and feed watchers);
//  4. Close waits for every goroutine the Daemon started.
//
// It returns what failed: a drain that reached its bound (calls were cut), the HTTP server's
// shutdown, the gateway's connection. Calling Close more than once is harmless; the later
// calls return nil.
func (d *Daemon) Close() error {
	var err error
	d.closing.Do(func() { err = d.close() })
	return err
}

func (d *Daemon) close() error {
	if d.stop == nil { // never started: only what New made is held
		return d.release()
	}
	var errs []error
	d.ready.Store(false)
	d.health.Shutdown()
	d.log.Info("draining in-flight calls", "bound", d.opts.Drain.String())
	d.stopFeed()
	d.feedDone.Wait()

	drainCtx, cancel := context.WithTimeout(context.Background(), d.opts.Drain)
	defer cancel()
	var drain sync.WaitGroup
	drain.Go(d.grpc.GracefulStop)
	var shutdownErr error
	drain.Go(func() { shutdownErr = d.web.Shutdown(drainCtx) })
	drained := make(chan struct{})
	go func() { drain.Wait(); d.inner.GracefulStop(); close(drained) }()
	select {
	case <-drained:
	case <-drainCtx.Done():
		d.log.Warn("drain bound reached, stopping")
		errs = append(errs, fmt.Errorf("drain: bound %s reached, in-flight calls cut", d.opts.Drain))
		d.grpc.Stop()
		d.inner.Stop()
		if err := d.web.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the HTTP server: %w", err))
		}
		<-drained
	}
	if shutdownErr != nil && !errors.Is(shutdownErr, context.DeadlineExceeded) { // the bound is reported above
		errs = append(errs, fmt.Errorf("shut the HTTP server down: %w", shutdownErr))
	}
	d.stop()
	d.loops.Wait()
	if err := d.conn.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close the gateway's connection: %w", err))
	}
	d.log.Info("stopped")
	return errors.Join(errs...)
}

// serverOptions are what both gRPC servers share: limits, metrics, auth, and the service's
// own codec checks and panic recovery.
func (d *Daemon) serverOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(d.opts.MaxMsgSize),
		grpc.MaxSendMsgSize(d.opts.MaxMsgSize),
		grpc.MaxConcurrentStreams(uint32(d.opts.MaxStreams)),
		// Clients may ping every 10s, even without calls; a peer that stops answering pings is
		// dropped, which ends a Listen stream whose client went away without closing it.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
	}
	opts = append(opts, d.metrics.ServerOptions()...)
	opts = append(opts, d.opts.Auth...)
	opts = append(opts, grpc.ChainUnaryInterceptor(service.DefaultDeadline(d.opts.DefaultDeadline)))
	return append(opts, service.ServerOptions(d.log)...)
}

func transportCredentials(c *tls.Config) credentials.TransportCredentials {
	if c == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(c)
}

// Exporter is the replica's exporter to NATS JetStream; nil without Options.Export.
func (d *Daemon) Exporter() *jetstream.Exporter { return d.export }

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// exportMetrics makes the figures the store, feed, export, lock and pool keep into metrics.
func (d *Daemon) exportMetrics() {
	m, store, feed, taken := d.metrics, d.store, d.feed, d.taken
	m.Counter("conflicts_total", "Reserve calls refused for overlap.", func() float64 { return float64(store.Stats().Conflicts) })
	m.Counter("tx_retries_total", "Transactions run again after a deadlock or lock wait timeout.", func() float64 { return float64(store.Stats().TxRetries) })
	m.Counter("lock_bypassed_total", "Writes that went ahead on the database guard alone, the lock service being down.", func() float64 { return float64(store.Stats().LockUnavailable) })
	m.Counter("pool_units_from_memory_total", "Pool calls' tries whose units the read index chose.", func() float64 { return float64(store.Stats().UnitsFromMemory) })
	m.Counter("pool_units_gone_total", "Pool calls' tries whose units were all taken meanwhile, tried again.", func() float64 { return float64(store.Stats().UnitsGone) })
	m.Gauge("feed_subscribers", "Open feed subscriptions: Listen streams, and the cache's.", func() float64 { return float64(feed.Stats().Subscribers) })
	m.Gauge("feed_head_seq", "Newest change seq this replica has read.", func() float64 { return float64(feed.Stats().Head) })
	m.Gauge("feed_lag_seconds", "Age of the newest change when this replica read it.", func() float64 { return feed.Stats().Lag.Seconds() })
	m.Gauge("feed_leader", "1 while this replica sequences the change feed.", func() float64 {
		if feed.Stats().Leading {
			return 1
		}
		return 0
	})
	m.Counter("feed_cut_off_total", "Listeners cut off for falling too far behind.", func() float64 { return float64(feed.Stats().CutOff) })
	m.Counter("feed_election_errors_total", "Feed leader elections that failed with an error.", func() float64 { return float64(feed.Stats().ElectionErrors) })
	m.Gauge("feed_unstamped_age_seconds", "How long the oldest change without a seq has waited for one.", func() float64 { return feed.Health().UnstampedAge.Seconds() })
	m.Gauge("feed_behind_changes", "Changes stored that this replica has not read yet.", func() float64 { return float64(feed.Health().Behind) })
	if r, ok := d.locker.(*lock.Redis); ok {
		m.Counter("lock_lost_total", "Redis locks found expired at release.", func() float64 { return float64(r.Stats().Lost) })
		m.Counter("lock_unavailable_total", "Lock attempts that found Redis unreachable.", func() float64 { return float64(r.Stats().Unavailable) })
	}
	if taken != nil {
		m.Gauge("cache_entries", "Committed reservations the cache holds.", func() float64 { return float64(taken.Stats().Entries) })
		m.Counter("cache_refusals_total", "Reserve items the cache found a reservation in the way of.", func() float64 { return float64(taken.Stats().Refused) })
	}
	// The export's lag and halt are read from the database by every replica with an export
	// configured (watchExport). Every export metric is there without an export too, at 0, so
	// that the dashboard's and alerts' queries always name exported metrics.
	m.Gauge("export_lag_changes", "Changes stored that the export to NATS JetStream has not published yet; 0 without an export.", func() float64 { return float64(d.exportLag.Load().Changes) })
	m.Gauge("export_lag_seconds", "Age of the oldest change the export to NATS JetStream has not published yet; 0 when none waits.", func() float64 { return d.exportLag.Load().Age.Seconds() })
	m.Gauge("export_halted", "1 when the export to NATS JetStream halted: the database's feed and the stream diverged (reservationd export status).", func() float64 {
		if d.exportLag.Load().Halted != "" {
			return 1
		}
		return 0
	})
	stats := func() jetstream.Stats {
		if d.export == nil {
			return jetstream.Stats{}
		}
		return d.export.Stats()
	}
	m.Gauge("export_leader", "1 while this replica exports the change feed to NATS JetStream.", func() float64 {
		if stats().Leading {
			return 1
		}
		return 0
	})
	m.Counter("export_published_total", "Changes this replica stored in the NATS JetStream stream.", func() float64 { return float64(stats().Published) })
	m.Counter("export_duplicates_total", "Publishes the stream acknowledged as duplicates (a retry found its message stored).", func() float64 { return float64(stats().Duplicates) })
	m.Counter("export_wrong_sequence_total", "Publishes the stream refused for not following its last message.", func() float64 { return float64(stats().WrongSeq) })
	m.Counter("export_halts_total", "Times this replica found the database's feed and the stream diverged, and halted the export.", func() float64 { return float64(stats().Halts) })
	m.DB("mysql", d.db.DB)
}

// watchExport reads the export's lag and state from the database every second (so that every
// replica reports it, whichever exports), and keeps the export's health service in step:
// NOT_SERVING once the export halted.
func (d *Daemon) watchExport(ctx context.Context) {
	watch(ctx, time.Second, d.health, ExportHealthService, func(ctx context.Context) error {
		lag, err := d.export.Lag(ctx)
		if err != nil {
			return nil // the database's own health reports it
		}
		d.exportLag.Store(&lag)
		if lag.Halted != "" {
			return errors.New(lag.Halted)
		}
		return nil
	}, func(err error) {
		if err != nil {
			d.log.Error("export to NATS JetStream halted: resolve it with reservationd export status and reservationd export reset", "why", err)
		} else {
			d.log.Info("export to NATS JetStream runs again")
		}
	})
}

// watchFeed keeps the feed's health service in step with the feed, and tells the conflict
// cache, which follows the feed, whether its view can be shown to be current: while it
// cannot, the cache proposes no refusal.
func (d *Daemon) watchFeed(ctx context.Context, cacheCurrent func(bool)) {
	watch(ctx, time.Second, d.health, FeedHealthService, func(ctx context.Context) error {
		err := d.feed.Stalled()
		cacheCurrent(err == nil)
		return err
	}, func(err error) {
		if !d.ready.Load() {
			return // the feed stops at Close: no news
		}
		if err != nil {
			d.log.Error("change feed stalled", "err", err)
		} else {
			d.log.Info("change feed current again")
		}
	})
}

// watchDatabase keeps the health service's answer in step with the database.
func (d *Daemon) watchDatabase(ctx context.Context) {
	watch(ctx, 2*time.Second, d.health, "", func(ctx context.Context) error {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return d.db.PingContext(pctx)
	}, func(err error) {
		d.log.Warn("database health changed", "serving", err == nil, "err", err)
	})
}

// watch runs check every interval until ctx ends and sets service's health from it, calling
// changed each time the answer turns.
func watch(ctx context.Context, every time.Duration, h *health.Server, service string, check func(context.Context) error, changed func(error)) {
	serving := true
	h.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := check(ctx)
		if ok := err == nil; ok != serving && ctx.Err() == nil {
			serving = ok
			status := healthpb.HealthCheckResponse_SERVING
			if !ok {
				status = healthpb.HealthCheckResponse_NOT_SERVING
			}
			changed(err)
			h.SetServingStatus(service, status)
		}
	}
}
