package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "reservation/proto/reservation/v1"
)

// reserve --pool books the first free unit of a pool and shows it; a full pool is exit 4.
func TestReservePool(t *testing.T) {
	clean(t, "")
	addr := serve(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewReservationServiceClient(conn)
	if _, err := client.PutResource(context.Background(), &pb.PutResourceRequest{Resource: &pb.Resource{Id: "room-101", PoolId: "deluxe-king"}}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := rsvctl(t, addr, "resource", "put", "room-102", "--pool", "deluxe-king", "--name", "Room 102", "--label", "floor=1", "--time-zone", "Europe/Paris")
	if code != 0 || !strings.Contains(out, "Europe/Paris") || !strings.Contains(out, "floor=1") {
		t.Errorf("resource put: exit %d, %q %q", code, out, errOut)
	}
	if _, errOut, code := rsvctl(t, addr, "resource", "put", "room-9", "--capacity", "-2"); code != 2 || !strings.Contains(errOut, "--capacity") {
		t.Errorf("resource put --capacity -2: exit %d, %q; want 2 naming --capacity", code, errOut)
	}
	if _, errOut, code := rsvctl(t, addr, "resource", "put", "room-9", "--min-duration", "2h", "--max-duration", "1h"); code != 2 || !strings.Contains(errOut, "--max-duration") {
		t.Errorf("resource put --min-duration 2h --max-duration 1h: exit %d, %q; want 2 naming --max-duration", code, errOut)
	}
	if out, errOut, code := rsvctl(t, addr, "resource", "put", "room-9", "--buffer-before", "10m", "--max-advance", "90d"); code != 0 || !strings.Contains(out, "before=10m advance=90d") {
		t.Errorf("resource put with rules: exit %d, %q %q; want them in RULES", code, out, errOut)
	}
	if out, _, code := rsvctl(t, addr, "resource", "get", "room-102", "-o", "json"); code != 0 || !strings.Contains(out, `"display_name":"Room 102"`) {
		t.Errorf("resource get -o json: exit %d, %q", code, out)
	}
	if out, _, code := rsvctl(t, addr, "resource", "list", "--pool", "deluxe-king"); code != 0 || strings.Count(out, "deluxe-king") != 2 {
		t.Errorf("resource list --pool: exit %d, %q; want both rooms", code, out)
	}
	for _, want := range []string{"room-101", "room-102"} {
		out, errOut, code := rsvctl(t, addr, "reserve", "--user", "alice", "--pool", "deluxe-king", "--start", "2030-05-01 15:00", "--for", "2d")
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("reserve --pool: exit %d, %q %q; want %s assigned", code, out, errOut, want)
		}
	}
	_, errOut, code = rsvctl(t, addr, "reserve", "--user", "alice", "--pool", "deluxe-king", "--start", "2030-05-02 15:00", "--for", "1d")
	if code != 4 || !strings.Contains(errOut, "deluxe-king") {
		t.Errorf("reserve --pool of a full pool: exit %d, %q; want 4 naming the pool", code, errOut)
	}
	if _, errOut, code := rsvctl(t, addr, "reserve", "--pool", "p", "--resource", "r", "--start", "+1h", "--for", "1h"); code != 2 {
		t.Errorf("--pool with --resource: exit %d, %q; want 2", code, errOut)
	}
}

// free --pool lists each unit's free windows, by unit, with its places left; free on a
// capacity resource shows the places left, split where they change; -o json spells both as
// the API does. Both --resource and --pool, or neither, is exit 2 naming the flags.
func TestFreePool(t *testing.T) {
	clean(t, "")
	addr := serve(t)
	for _, args := range [][]string{
		{"resource", "put", "room-101", "--pool", "deluxe-king"},
		{"resource", "put", "room-102", "--pool", "deluxe-king", "--capacity", "2"},
		{"resource", "put", "level-2", "--capacity", "50"},
		{"reserve", "--user", "alice", "--resource", "room-101", "--start", "2030-05-01 10:00", "--end", "2030-05-01 12:00"},
		{"reserve", "--user", "bob", "--resource", "room-102", "--start", "2030-05-01 09:00", "--end", "2030-05-01 11:00"},
		{"reserve", "--user", "car-1", "--resource", "level-2", "--start", "2030-05-01 09:00", "--end", "2030-05-01 11:00"},
	} {
		if out, errOut, code := rsvctl(t, addr, args...); code != 0 {
			t.Fatalf("%v: exit %d, %s%s", args, code, out, errOut)
		}
	}
	window := []string{"--start", "2030-05-01 08:00", "--end", "2030-05-01 12:00"}

	out, errOut, code := rsvctl(t, addr, append([]string{"free", "--pool", "deluxe-king"}, window...)...)
	want := `RESOURCE  START                 END                   LENGTH  AVAILABLE
room-101  2030-05-01 08:00 UTC  2030-05-01 10:00 UTC  2h      1
room-102  2030-05-01 08:00 UTC  2030-05-01 09:00 UTC  1h      2
room-102  2030-05-01 09:00 UTC  2030-05-01 11:00 UTC  2h      1
room-102  2030-05-01 11:00 UTC  2030-05-01 12:00 UTC  1h      2
`
	if code != 0 || out != want {
		t.Errorf("free --pool: exit %d, %s%s\nwant:\n%s", code, out, errOut, want)
	}
	out, errOut, code = rsvctl(t, addr, append([]string{"free", "--resource", "level-2"}, window...)...)
	want = `START                 END                   LENGTH  AVAILABLE
2030-05-01 08:00 UTC  2030-05-01 09:00 UTC  1h      50
2030-05-01 09:00 UTC  2030-05-01 11:00 UTC  2h      49
2030-05-01 11:00 UTC  2030-05-01 12:00 UTC  1h      50
`
	if code != 0 || out != want {
		t.Errorf("free --resource of capacity 50: exit %d, %s%s\nwant:\n%s", code, out, errOut, want)
	}

	out, errOut, code = rsvctl(t, addr, append([]string{"free", "--pool", "deluxe-king", "-o", "json"}, window...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var first struct {
		ResourceID string `json:"resource_id"`
		Available  int    `json:"available"`
		Start      string `json:"start"`
	}
	if code != 0 || len(lines) != 4 {
		t.Fatalf("free --pool -o json: exit %d, %s%s; want 4 lines", code, out, errOut)
	}
	if err := json.Unmarshal([]byte(lines[1]), &first); err != nil || first.ResourceID != "room-102" || first.Available != 2 || first.Start != "2030-05-01T08:00:00Z" {
		t.Errorf("free --pool -o json second line %s: %+v, %v; want room-102 from 08:00 with 2 places", lines[1], first, err)
	}

	for _, args := range [][]string{
		{"free", "--pool", "deluxe-king", "--resource", "room-101"},
		{"free", "--start", "2030-05-01"},
	} {
		_, errOut, code := rsvctl(t, addr, args...)
		if code != 2 || !strings.Contains(errOut, "--resource") || !strings.Contains(errOut, "--pool") || !strings.Contains(errOut, "rsvctl free --help") {
			t.Errorf("%v: exit %d, %q; want 2 naming --resource and --pool, pointing at the help", args, code, errOut)
		}
	}
	// The server's refusal of the pool id names the flag it came from.
	if _, errOut, code := rsvctl(t, addr, "free", "--pool", strings.Repeat("p", 65)); code != 2 || !strings.HasPrefix(errOut, "rsvctl: --pool") {
		t.Errorf("free --pool of 65 bytes: exit %d, %q; want 2 naming --pool", code, errOut)
	}
}
