package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "reservation/proto/reservation/v1"
	"reservation/repo/repotest"
)

// BenchmarkIdleListeners opens b.N Listen streams on a running reservationd and reports its
// resident memory before and after, and per listener.
//
//	go test -run '^$' -bench IdleListeners -benchtime 1000x ./cmd/reservationd/
func BenchmarkIdleListeners(b *testing.B) {
	_, dsn := repotest.NewDB(b)
	d := startDaemon(b, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_LOCK=local", "RESERVATION_LOG_LEVEL=warn")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const conns = 10
	clients := make([]pb.ReservationServiceClient, conns)
	for i := range clients {
		conn := d.dial(b)
		clients[i] = pb.NewReservationServiceClient(conn)
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		d.waitServing(b, wctx, conn)
		wcancel()
	}
	time.Sleep(time.Second)
	before := rss(b, d.cmd.Process.Pid)

	b.ResetTimer()
	for i := range b.N {
		stream, err := clients[i%conns].Listen(ctx, &pb.ListenRequest{})
		if err == nil {
			_, err = stream.Header() // the subscription exists once the header is sent
		}
		if err != nil {
			b.Fatalf("listener %d: %v", i, err)
		}
	}
	b.StopTimer()
	time.Sleep(time.Second)
	after := rss(b, d.cmd.Process.Pid)
	b.ReportMetric(float64(before)/(1<<20), "rss-before-MB")
	b.ReportMetric(float64(after)/(1<<20), "rss-after-MB")
	b.ReportMetric(float64(after-before)/float64(b.N)/(1<<10), "KB/listener")
}

// rss is a process's resident memory in bytes, from /proc.
func rss(b *testing.B, pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS in /proc status")
	return 0
}
