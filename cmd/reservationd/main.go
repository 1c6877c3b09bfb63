// Command reservationd serves the reservation gRPC API.
//
//	reservationd [flags]          migrate the schema (unless --migrate=false) and serve
//	reservationd migrate [flags]  migrate the schema and exit
//	reservationd health [flags]   exit 0 if the replica on --grpc-addr is SERVING, 1 if not
//	reservationd export status|reset [flags]
//	                              the change feed's export to NATS JetStream: where it is, and
//	                              the way out of a halted one (docs/nats.md)
//	reservationd --version        print the build: version, VCS revision, Go version
//	reservationd help             the subcommands, the required settings and every flag
//
// Every flag falls back to an environment variable, named in its help (usage.go).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"reservation"
	"reservation/auth"
	"reservation/buildinfo"
	"reservation/jetstream"
	"reservation/lock"
	"reservation/repo"
	"reservation/server"
	"reservation/telemetry"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, processLogger); err != nil {
		fmt.Fprintln(os.Stderr, "reservationd:", err)
		if errors.Is(err, errUsage) {
			// As rsvctl: a command line that cannot run exits 2, pointing at the help.
			fmt.Fprintln(os.Stderr, "Run 'reservationd help' for usage.")
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// processLogger makes log the process's one log. Code that logs to the default logger rather
// than one it was given (repo's failover and migration lease) and go-redis, whose logger is
// process-wide with no per-client option, then write through it, in its format. Only main
// calls it, once, before anything runs: tests of run pass their own hook, and leave the
// process's loggers alone.
func processLogger(log *slog.Logger) {
	slog.SetDefault(log)
	redis.SetLogger(lock.RedisLogger(log))
}

// run is one invocation; the help and the version go to stdout. setLogger, when not nil, is
// given the log once it is made (main's is processLogger).
func run(args []string, stdout io.Writer, setLogger func(*slog.Logger)) error {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		fmt.Fprintln(stdout, "reservationd", buildinfo.Read())
		return nil
	}
	if len(args) > 0 && isHelp(args[0]) {
		c := DefaultConfig()
		printUsage(stdout, &c)
		return nil
	}
	err := dispatch(args, stdout, setLogger)
	if errors.Is(err, flag.ErrHelp) { // --help or -h after a subcommand or a flag
		c := DefaultConfig()
		printUsage(stdout, &c)
		return nil
	}
	return err
}

// dispatch runs the subcommand args name: health, export, migrate, or (none) serve.
func dispatch(args []string, stdout io.Writer, setLogger func(*slog.Logger)) error {
	cmd := "serve"
	if len(args) > 0 && args[0] == "health" {
		return probeHealth(context.Background(), args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "export" {
		return exportCommand(context.Background(), stdout, args[1:])
	}
	if len(args) > 0 && args[0] == "migrate" {
		cmd, args = "migrate", args[1:]
	}
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	if setLogger != nil {
		setLogger(log)
	}
	for _, name := range unknownEnv(os.Environ()) {
		log.Warn("unknown environment variable: no flag reads it", "name", name)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if cfg.MySQLDSN == "" {
		return usageError{errors.New("--mysql-dsn (RESERVATION_MYSQL_DSN) is required, e.g. root@tcp(127.0.0.1:3306)/reservation")}
	}
	if err := repo.CheckDSN(cfg.MySQLDSN); err != nil {
		return usageError{fmt.Errorf("--mysql-dsn: %w", err)}
	}
	db, err := repo.Open(ctx, cfg.MySQLDSN)
	if err != nil {
		return fmt.Errorf("--mysql-dsn: %w", err)
	}
	defer db.Close()
	if cmd == "migrate" || cfg.Migrate {
		done, err := repo.MigrateUp(ctx, db.DB)
		if err != nil {
			return err
		}
		log.Info(migratedMessage(done), "applied", done.Applied, "version", done.Version)
	}
	if cmd == "migrate" {
		return nil
	}
	// Tracing: off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (package telemetry).
	tracing, err := telemetry.FromEnv(ctx, "reservationd", buildinfo.Version(), log)
	if err != nil {
		return err
	}
	defer flushTraces(tracing, log)
	return serve(ctx, cfg, db, log, tracing)
}

// migratedMessage says what a migration did.
func migratedMessage(m repo.Migrated) string {
	switch m.Applied {
	case 0:
		return fmt.Sprintf("schema up to date at version %d: no migration to apply", m.Version)
	case 1:
		return fmt.Sprintf("applied 1 migration, now at version %d", m.Version)
	}
	return fmt.Sprintf("applied %d migrations, now at version %d", m.Applied, m.Version)
}

// flushTraces exports the spans not yet sent, within a bound, at exit.
func flushTraces(t *telemetry.Tracing, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		log.Warn("flushing traces", "err", err)
	}
}

// serve runs a replica on db until ctx ends, then closes it in its documented order.
func serve(ctx context.Context, cfg Config, db *sqlx.DB, log *slog.Logger, tracing *telemetry.Tracing) error {
	locker, closeLocker, err := newLocker(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeLocker()
	opts := cfg.Server
	opts.Logger, opts.Tracing = log, tracing
	if opts.TLS, err = serverTLS(cfg); err != nil {
		return err
	}
	if cfg.AuthFile != "" {
		a, err := auth.Load(cfg.AuthFile)
		if err != nil {
			return err
		}
		opts.Auth = a.ServerOptions()
	}
	galera, err := repo.Galera(ctx, db)
	if err != nil {
		return err
	}
	perTrip := galera
	switch cfg.OneStatementPerTrip {
	case "on":
		perTrip = true
	case "off":
		if galera {
			return errors.New("--one-statement-per-trip off on a Galera node: its writes must go one statement per round trip")
		}
		perTrip = false
	}
	if perTrip {
		log.Info("a write sends one statement per round trip", "galera", galera)
	}
	opts.Store.OneStatementPerTrip = perTrip
	if opts.Export, err = exportOptions(cfg, os.Getenv); err != nil {
		return err
	}
	d, err := server.New(ctx, db, locker, opts)
	if err != nil {
		return err
	}
	log.Info("writer lock", "lock", cfg.Lock)
	d.Start()
	select {
	case err = <-d.Failed():
	case <-ctx.Done():
	}
	// What went wrong while closing (a drain cut at its bound, say) is logged: the replica
	// stopped as asked, and the exit status says only whether it failed while serving.
	if cerr := d.Close(); cerr != nil {
		log.Warn("closing the replica", "err", cerr)
	}
	return err
}

// serverTLS is the TLS configuration of both ports, or nil without --tls-cert.
func serverTLS(cfg Config) (*tls.Config, error) {
	if cfg.TLSCert == "" && cfg.TLSKey == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	if cfg.TLSClientCA != "" {
		pool, err := readPool(cfg.TLSClientCA, "--tls-client-ca")
		if err != nil {
			return nil, err
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// readPool reads the PEM certificates of file, which flag names.
func readPool(file, flag string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s holds no PEM certificate", flag, file)
	}
	return pool, nil
}

// newLocker makes the writer lock of cfg, logging to log. A Redis that does not answer at
// start is a WARN, not a failure: the replica serves, its locks fail fast until Redis is back,
// and the database is the final guard of every write.
func newLocker(ctx context.Context, cfg Config, log *slog.Logger) (reservation.Locker, func(), error) {
	switch cfg.Lock {
	case "local":
		return lock.NewLocal(cfg.LockWait), func() {}, nil
	case "redis":
		cc, err := redisClientConfig(cfg, os.Getenv)
		if err != nil {
			return nil, nil, err
		}
		client, err := lock.NewClient(cc)
		if err != nil {
			return nil, nil, err
		}
		pingCtx, cancel := context.WithTimeout(ctx, redisStartPing)
		err = client.Ping(pingCtx).Err()
		cancel()
		if err != nil {
			log.Warn("redis does not answer at start: the replica serves, its locks fail fast until redis is back, and the database guards every write",
				"redis_addr", cfg.Redis.Addr, "redis_mode", cfg.Redis.Mode, "err", err)
		}
		opts := cfg.RedisLock
		opts.Logger = log
		l := lock.NewRedis(client, opts)
		return l, func() { client.Close() }, nil
	}
	return nil, nil, fmt.Errorf("--lock must be redis or local, got %q", cfg.Lock)
}

// natsPasswordEnv holds the NATS password of --nats-user; like the Redis one, it has no flag.
const natsPasswordEnv = "RESERVATION_NATS_PASSWORD"

// exportOptions turns the --nats-* flags into the export's options, reading the password
// (from getenv or --nats-password-file) and the TLS files; nil without --nats-url.
func exportOptions(cfg Config, getenv func(string) string) (*jetstream.Options, error) {
	n := cfg.NATS
	if n.URLs == "" {
		return nil, nil
	}
	o := &jetstream.Options{Stream: n.Stream, SubjectPrefix: n.SubjectPrefix, Replicas: n.Replicas}
	o.Conn = jetstream.ConnConfig{URLs: lock.SplitAddrs(n.URLs), CredsFile: n.CredsFile, NKeySeedFile: n.NKeyFile, User: n.User}
	o.Conn.Password = getenv(natsPasswordEnv)
	if n.PasswordFile != "" {
		if o.Conn.Password != "" {
			return nil, fmt.Errorf("--nats-password-file and %s are both set: give the password once", natsPasswordEnv)
		}
		b, err := os.ReadFile(n.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("--nats-password-file: %w", err)
		}
		o.Conn.Password = strings.TrimRight(string(b), "\r\n")
	}
	if n.TLSCA != "" || n.TLSCert != "" {
		o.Conn.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if n.TLSCA != "" {
			pool, err := readPool(n.TLSCA, "--nats-tls-ca")
			if err != nil {
				return nil, err
			}
			o.Conn.TLS.RootCAs = pool
		}
		if n.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(n.TLSCert, n.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("--nats-tls-cert/--nats-tls-key: %w", err)
			}
			o.Conn.TLS.Certificates = []tls.Certificate{cert}
		}
	}
	if err := o.Conn.Validate(); err != nil {
		return nil, fmt.Errorf("--nats-*: %w", err)
	}
	return o, nil
}

// redisStartPing bounds the ping of Redis at start: a few of the client's 250ms timeouts.
const redisStartPing = time.Second

// redisPasswordEnv holds the Redis password; there is no flag for it, so that it never shows in
// a process listing.
const redisPasswordEnv = "RESERVATION_REDIS_PASSWORD"

// redisClientConfig turns the --redis-* flags into the locker's client configuration, reading
// the password (from getenv or --redis-password-file) and the TLS files.
func redisClientConfig(cfg Config, getenv func(string) string) (lock.ClientConfig, error) {
	cc := lock.ClientConfig{
		Addrs: lock.SplitAddrs(cfg.Redis.Addr), Mode: cfg.Redis.Mode, MasterName: cfg.Redis.MasterName,
		Username: cfg.Redis.Username, DB: cfg.Redis.DB,
	}
	if len(cc.Addrs) == 0 {
		return cc, fmt.Errorf("--lock redis needs --redis-addr (%s)", envName("redis-addr"))
	}
	cc.Password = getenv(redisPasswordEnv)
	if cfg.Redis.PasswordFile != "" {
		if cc.Password != "" {
			return cc, fmt.Errorf("--redis-password-file and %s are both set: give the password once", redisPasswordEnv)
		}
		b, err := os.ReadFile(cfg.Redis.PasswordFile)
		if err != nil {
			return cc, fmt.Errorf("--redis-password-file: %w", err)
		}
		cc.Password = strings.TrimRight(string(b), "\r\n")
	}
	if !cfg.Redis.TLS {
		return cc, nil
	}
	cc.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.Redis.TLSCA != "" {
		pool, err := readPool(cfg.Redis.TLSCA, "--redis-tls-ca")
		if err != nil {
			return cc, err
		}
		cc.TLS.RootCAs = pool
	}
	if cfg.Redis.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Redis.TLSCert, cfg.Redis.TLSKey)
		if err != nil {
			return cc, fmt.Errorf("--redis-tls-cert/--redis-tls-key: %w", err)
		}
		cc.TLS.Certificates = []tls.Certificate{cert}
	}
	return cc, nil
}
