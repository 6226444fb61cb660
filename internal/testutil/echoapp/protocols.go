package echoapp

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The app speaks what workloads speak besides plain HTTP/1.1, so tests can
// drive each through the gateway with a real client: HTTP/2 without TLS
// (h2c), gRPC on it (the health service, serving "echo", and
// berth.test.Echo/Chat, a bidirectional stream answering each message
// with "echo: " and the message), WebSockets on /ws (each message echoed
// the same way) and server-sent events on /events?n=N&ms=M (N events, M
// milliseconds apart).

// ChatDesc describes berth.test.Echo, whose Chat stream carries
// google.protobuf.StringValue both ways; a client opens it with
// conn.NewStream(ctx, &ChatDesc.Streams[0], ChatMethod).
var ChatDesc = grpc.ServiceDesc{
	ServiceName: "berth.test.Echo",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Chat",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			for {
				m := new(wrapperspb.StringValue)
				if err := stream.RecvMsg(m); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				m.Value = "echo: " + m.Value
				if err := stream.SendMsg(m); err != nil {
					return err
				}
			}
		},
	}},
}

// ChatMethod is the full name of the Chat stream.
const ChatMethod = "/berth.test.Echo/Chat"

// withProtocols serves gRPC calls with a gRPC server and everything else
// with h, and adds /ws and /events to mux.
func withProtocols(mux *http.ServeMux, h http.Handler) http.Handler {
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("echo", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	gs.RegisterService(&ChatDesc, struct{}{})

	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		for i := range max(n, 1) {
			if i > 0 {
				select {
				case <-time.After(time.Duration(ms) * time.Millisecond):
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "id: %d\ndata: event %d\n\n", i, i)
			w.(http.Flusher).Flush()
		}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func protocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return p
}
