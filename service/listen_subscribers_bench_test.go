package service_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"reservation/lock"
	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
	"reservation/queue"
	"reservation/repo"
	"reservation/repo/repotest"
)

// BenchmarkListenSubscribers measures how many live Listen subscribers one replica keeps
// current while writes run at the spread rate (2,500 reservations/s, paced, 16 writers, on
// 10,000 resources, through the replica itself): for each number of subscribers, the lag of
// every delivery (from the reservation's created_at, taken before its transaction, to its
// arrival: an upper bound on commit-to-delivery), and how many subscribers ever lagged more
// than 1 s. A replica keeps S subscribers current when behind-1s is 0 and writes/s holds the
// rate. Two kinds of subscriber: "all" listens to every change (each gets 2,500 changes/s),
// "resource" to one resource each (a calendar's view: a change every few seconds).
// Subscribers run in this process, beside the replica, over one client connection per 500:
// their CPU is the machine's too, so the figures are a floor; all-0 is the writers alone, the
// rate this machine reaches without subscribers. b.N is the reservations written.
//
//	go test -run '^$' -bench ListenSubscribers -benchtime 25000x ./service/
func BenchmarkListenSubscribers(b *testing.B) {
	for _, c := range []struct {
		kind string
		subs int
	}{{"all", 0}, {"all", 10}, {"all", 50}, {"all", 100}, {"all", 200}, {"resource", 1000}, {"resource", 5000}} {
		b.Run(fmt.Sprintf("%s-%d", c.kind, c.subs), func(b *testing.B) {
			listenSubscribers(b, c.kind == "all", c.subs)
		})
	}
}

func listenSubscribers(b *testing.B, all bool, subs int) {
	const writers, rate, resources = 16, 2500, 10000
	_, dsn := repotest.NewDB(b)
	client := locktest.Client(b)
	prefix := locktest.Prefix(b, client)
	pool, err := repo.Open(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pool.Close() })
	locker := lock.NewRedis(client, lock.RedisOptions{Prefix: prefix, Logger: quiet})
	// The production defaults.
	rep := startReplicaWith(b, pool, locker, queue.Options{PollInterval: queue.DefaultPollInterval, StampInterval: queue.DefaultPollInterval})

	var conns []pb.ReservationServiceClient
	for range (subs + 499) / 500 { // the server takes 1,000 streams per connection
		cc, err := grpc.NewClient(rep.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		conns = append(conns, pb.NewReservationServiceClient(cc))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var lags []time.Duration
	var behind atomic.Int64 // subscribers that lagged more than 1s at least once
	var ready, done sync.WaitGroup
	for i := range subs {
		ready.Add(1)
		done.Go(func() {
			req := &pb.ListenRequest{}
			if !all {
				req.ResourceId = fmt.Sprint("sub-", i%resources)
			}
			stream, err := conns[i%len(conns)].Listen(ctx, req)
			if err == nil {
				_, err = stream.Header()
			}
			ready.Done()
			if err != nil {
				b.Error(err)
				return
			}
			var mine []time.Duration
			late := false
			for {
				m, err := stream.Recv()
				if err != nil {
					break // cancelled at the end
				}
				lag := time.Since(m.GetReservation().GetCreatedAt().AsTime())
				mine = append(mine, lag)
				if lag > time.Second && !late {
					late = true
					behind.Add(1)
				}
			}
			mu.Lock()
			lags = append(lags, mine...)
			mu.Unlock()
		})
	}
	ready.Wait()

	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < b.N; i += writers {
				if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
					time.Sleep(d)
				}
				// Resource i%10,000, each hour of the calendar once: every write succeeds.
				r := booking(fmt.Sprint("sub-", i%resources), float64(i/resources), float64(i/resources+1))
				if _, err := rep.client.Reserve(ctx, &pb.ReserveRequest{Reservation: r}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	time.Sleep(2 * time.Second) // the last changes reach everyone, or show as more than 1s late
	b.StopTimer()
	cancel()
	done.Wait()

	slices.Sort(lags)
	q := func(p float64) float64 {
		if len(lags) == 0 {
			return -1
		}
		return float64(lags[int(p*float64(len(lags)-1))].Microseconds()) / 1000
	}
	want := b.N * subs
	if !all { // subscriber i hears resource i's writes: those i, i+10,000, ... below b.N
		want = 0
		for r := range subs {
			want += (b.N - r%resources + resources - 1) / resources
		}
	}
	b.ReportMetric(float64(b.N)/took.Seconds(), "writes/s")
	if want > 0 {
		b.ReportMetric(float64(len(lags))/float64(want), "delivered")
	}
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
	b.ReportMetric(float64(behind.Load()), "behind-1s")
}
