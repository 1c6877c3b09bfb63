// Package metrics counts what the service does, for Prometheus: every RPC by method and code
// with its latency, the resource locks' waits and outcomes, and figures the other packages
// already keep (store, feed, lock, database pool), read when scraped.
package metrics

import (
	"context"
	"database/sql"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"reservation"
	"reservation/buildinfo"
)

const namespace = "reservation"

// Metrics is one process's set of metrics, in its own registry.
type Metrics struct {
	reg      *prometheus.Registry
	rpcs     *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	lockWait *prometheus.HistogramVec
}

// New returns metrics with the Go runtime's and the process's already registered, and
// reservation_build_info (package buildinfo).
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "rpcs_total", Help: "RPCs handled, by method and status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "rpc_duration_seconds", Help: "Time to handle an RPC (a stream: its whole life), by method and status code.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method", "code"}),
		lockWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "lock_wait_seconds", Help: "Time to take a write's resource locks, by outcome (ok, aborted, unavailable, error).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17),
		}, []string{"outcome"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info", Help: "Always 1; its labels say which build runs: version, VCS revision and Go version.",
		ConstLabels: buildinfo.Read().Labels(),
	})
	build.Set(1)
	m.reg.MustRegister(m.rpcs, m.latency, m.lockWait, build, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// ServerOptions count and time every RPC of a gRPC server.
func (m *Metrics) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			start := time.Now()
			resp, err := h(ctx, req)
			m.observe(info.FullMethod, err, start)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			start := time.Now()
			err := h(srv, ss)
			m.observe(info.FullMethod, err, start)
			return err
		}),
	}
}

func (m *Metrics) observe(method string, err error, start time.Time) {
	code := status.Code(err).String()
	m.rpcs.WithLabelValues(method, code).Inc()
	m.latency.WithLabelValues(method, code).Observe(time.Since(start).Seconds())
}

// Locker wraps l so that each Lock's wait and outcome are recorded.
func (m *Metrics) Locker(l reservation.Locker) reservation.Locker { return &timedLocker{l, m.lockWait} }

type timedLocker struct {
	reservation.Locker
	wait *prometheus.HistogramVec
}

func (t *timedLocker) Lock(ctx context.Context, keys ...string) (reservation.Unlock, error) {
	start := time.Now()
	unlock, err := t.Locker.Lock(ctx, keys...)
	outcome := "ok"
	switch reservation.ErrorCode(err) {
	case "":
	case reservation.EABORTED:
		outcome = "aborted"
	case reservation.EUNAVAILABLE:
		outcome = "unavailable"
	default:
		outcome = "error"
	}
	t.wait.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	return unlock, err
}

// Counter exports a count another package keeps, read when scraped.
func (m *Metrics) Counter(name, help string, read func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, read))
}

// Gauge exports a level another package keeps, read when scraped.
func (m *Metrics) Gauge(name, help string, read func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, read))
}

// DB exports the statistics of a database pool.
func (m *Metrics) DB(name string, db *sql.DB) {
	m.reg.MustRegister(collectors.NewDBStatsCollector(db, name))
}
