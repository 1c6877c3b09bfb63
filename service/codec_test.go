package service_test

import (
	"bytes"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	pb "reservation/proto/reservation/v1"
)

// rawCodec sends bytes as they are, so a test can send what a well-behaved client cannot.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// Strings that are not UTF-8 and bytes that are not protobuf are the client's mistakes:
// INVALID_ARGUMENT naming the field, never INTERNAL, and nothing written.
func TestUndecodableRequestsAreInvalid(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	rep := startReplica(t, db, nil)
	conn := rawConn(t, rep)

	valid, err := proto.Marshal(&pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "UU", ResourceId: "r", Note: "NN", Start: at(0), End: at(1)}})
	if err != nil {
		t.Fatal(err)
	}
	reserve := bytes.Replace(bytes.Replace(valid, []byte("UU"), []byte("\xff\xfe"), 1), []byte("NN"), []byte("a\xc3"), 1)
	get, _ := proto.Marshal(&pb.GetRequest{Id: "II"})
	get = bytes.Replace(get, []byte("II"), []byte("\x80\x80"), 1)
	query, _ := proto.Marshal(&pb.QueryRequest{ResourceId: "RR", UserId: "ok"})
	query = bytes.Replace(query, []byte("RR"), []byte("\xc0\xaf"), 1)

	cases := []struct {
		method string
		body   []byte
		fields []string
	}{
		{"Reserve", reserve, []string{"reservation.note", "reservation.user_id"}},
		{"Get", get, []string{"id"}},
		{"Reserve", []byte{0xff, 0xff, 0xff}, []string{"request"}},
		{"Query", query, []string{"resource_id"}},
		{"Query", []byte{0x0a, 0x05, 'a'}, []string{"request"}},
	}
	for _, tc := range cases {
		method := "/reservation.v1.ReservationService/" + tc.method
		var out []byte
		var err error
		if tc.method == "Query" {
			stream, serr := conn.NewStream(ctxFor(t), &grpc.StreamDesc{ServerStreams: true}, method, grpc.ForceCodecV2(rawCodec{}))
			if serr != nil {
				t.Fatal(serr)
			}
			if err := stream.SendMsg(&tc.body); err != nil {
				t.Fatal(err)
			}
			stream.CloseSend()
			err = stream.RecvMsg(&out)
		} else {
			err = conn.Invoke(ctxFor(t), method, &tc.body, &out, grpc.ForceCodecV2(rawCodec{}))
		}
		st := wantCode(t, err, codes.InvalidArgument)
		got := badFields(st)
		slices.Sort(got)
		if !slices.Equal(got, tc.fields) {
			t.Errorf("%s %q: bad fields %v, want %v (%s)", tc.method, tc.body, got, tc.fields, st.Message())
		}
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 0 {
		t.Errorf("%d rows written by undecodable requests", n)
	}
	// The same bytes with valid strings go through.
	var out []byte
	if err := conn.Invoke(ctxFor(t), "/reservation.v1.ReservationService/Reserve", &valid, &out, grpc.ForceCodecV2(rawCodec{})); err != nil {
		t.Fatalf("valid request: %v", err)
	}
}

func rawConn(t *testing.T, rep *replica) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(rep.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
