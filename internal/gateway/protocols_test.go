package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"berth.dev/berth/internal/testutil"
)

// Every protocol a workload speaks passes through the gateway, each
// driven by a real client, and each also to a Function held at zero (no
// endpoints until the activator wakes it on the first request).

// atZero returns the target with no endpoints and an activator that lists
// its endpoints when asked, counting wake-ups.
func atZero(g **Gateway, tg Target, woken *atomic.Int64) (Target, Activator) {
	ready := tg
	tg.Endpoints = nil
	return tg, activatorFunc(func(ctx context.Context, env, name string) error {
		woken.Add(1)
		(*g).SetTargets([]Target{ready})
		return nil
	})
}

// bothWays runs f against a target that is up and one held at zero.
func bothWays(t *testing.T, tg Target, f func(t *testing.T, g *Gateway, url string)) {
	t.Run("up", func(t *testing.T) {
		g, url, _ := startGateway(t, Config{}, tg)
		f(t, g, url)
	})
	t.Run("at zero", func(t *testing.T) {
		var g *Gateway
		var woken atomic.Int64
		zero, act := atZero(&g, tg, &woken)
		g, url, _ := startGateway(t, Config{Activator: act}, zero)
		f(t, g, url)
		if woken.Load() != 1 {
			t.Errorf("woken %d times, want 1", woken.Load())
		}
	})
}

// h2cClient speaks HTTP/2 without TLS, as a client with prior knowledge.
func h2cClient(t *testing.T) *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestH2CToTheClient(t *testing.T) {
	u := startUpstream(t, "web", nil)
	bothWays(t, target("dev", "web", u), func(t *testing.T, g *Gateway, url string) {
		c := h2cClient(t)
		for i := range 3 {
			req := mustRequest(t, http.MethodPost, url+"/items?n=1", strings.NewReader(fmt.Sprintf(`{"i":%d}`, i)))
			req.Host = "web.dev.berth.localhost"
			res, body := do(t, c, req)
			if res.ProtoMajor != 2 {
				t.Fatalf("answered over %s, want HTTP/2", res.Proto)
			}
			e := decodeEcho(t, res, body)
			if e.Body != fmt.Sprintf(`{"i":%d}`, i) || e.Path != "/items" || e.RawQuery != "n=1" || e.Host != "web.dev.berth.localhost" {
				t.Errorf("upstream saw %+v", e)
			}
			if via := e.Header.Get("Via"); via != "2 berth" {
				t.Errorf("Via %q, want the HTTP/2 hop", via)
			}
		}
	})
}

// grpcUpstream serves gRPC's health service and a bidirectional echo
// stream (berth.test.Echo/Chat) over h2c, as a workload does.
func grpcUpstream(t *testing.T) *upstream {
	t.Helper()
	s := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	s.RegisterService(&chatDesc, struct{}{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	// upstream wants an httptest.Server only for its address.
	return &upstream{id: "grpc", srv: &httptest.Server{Listener: ln}}
}

var chatDesc = grpc.ServiceDesc{
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

func TestGRPCPassesThrough(t *testing.T) {
	up := grpcUpstream(t)
	bothWays(t, target("dev", "orders", up), func(t *testing.T, g *Gateway, url string) {
		conn, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(url, "http://"),
			grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("orders.dev.berth.localhost"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "orders"})
		if err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health check through the gateway: %v %v", res, err)
		}
		// An unknown service is gRPC's NotFound, carried in trailers.
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); err == nil ||
			!strings.Contains(err.Error(), "NotFound") {
			t.Errorf("unknown service: %v, want the upstream's NotFound status", err)
		}

		// Bidirectional: each reply comes before the next message is
		// sent, so nothing may wait for the end of the request.
		stream, err := conn.NewStream(ctx, &chatDesc.Streams[0], "/berth.test.Echo/Chat")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			msg := fmt.Sprintf("m%d", i)
			if err := stream.SendMsg(wrapperspb.String(msg)); err != nil {
				t.Fatal(err)
			}
			got := new(wrapperspb.StringValue)
			if err := stream.RecvMsg(got); err != nil || got.Value != "echo: "+msg {
				t.Fatalf("reply %d: %q %v", i, got.Value, err)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if err := stream.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
			t.Errorf("end of stream: %v, want EOF", err)
		}
	})
}

func TestWebSocketPassesThrough(t *testing.T) {
	up := startUpstream(t, "ws", func(w http.ResponseWriter, r *http.Request) {
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
	bothWays(t, target("dev", "ws", up), func(t *testing.T, g *Gateway, url string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/socket", &websocket.DialOptions{Host: "ws.dev.berth.localhost"})
		if err != nil {
			t.Fatalf("dial through the gateway: %v", err)
		}
		defer c.CloseNow()
		if res.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", res.StatusCode)
		}
		for i := range 5 {
			msg := fmt.Sprintf("m%d", i)
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_, got, err := c.Read(ctx)
			if err != nil || string(got) != "echo: "+msg {
				t.Fatalf("reply %d: %q %v", i, got, err)
			}
		}
		if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
			t.Errorf("close: %v", err)
		}
	})
}

// readEvent reads one server-sent event's data lines.
func readEvent(br *bufio.Reader) (string, error) {
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if len(data) > 0 {
				return strings.Join(data, "\n"), nil
			}
			continue
		}
		if v, ok := strings.CutPrefix(line, "data:"); ok {
			data = append(data, strings.TrimPrefix(v, " "))
		}
	}
}

// Server-sent events reach the client one by one: the upstream sends the
// next only once the client has read the previous through the gateway.
func TestServerSentEventsStream(t *testing.T) {
	acks := make(chan struct{})
	up := startUpstream(t, "events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		for i := range 5 {
			fmt.Fprintf(w, "id: %d\ndata: tick %d\n\n", i, i)
			w.(http.Flusher).Flush()
			select {
			case <-acks:
			case <-r.Context().Done():
				return
			}
		}
	})
	for _, proto := range []string{"HTTP/1.1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			bothWays(t, target("dev", "events", up), func(t *testing.T, g *Gateway, url string) {
				c := &http.Client{Timeout: 10 * time.Second}
				if proto == "h2c" {
					c = h2cClient(t)
				}
				req := mustRequest(t, http.MethodGet, url+"/events", nil)
				req.Host = "events.dev.berth.localhost"
				req.Header.Set("Accept", "text/event-stream")
				res, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				br := bufio.NewReader(res.Body)
				for i := range 5 {
					ev, err := readEvent(br)
					if err != nil || ev != fmt.Sprintf("tick %d", i) {
						t.Fatalf("event %d: %q %v", i, ev, err)
					}
					acks <- struct{}{}
				}
				if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
					t.Errorf("after the last event: %q %v", rest, err)
				}
			})
		})
	}
}

// A client that leaves a long stream frees the upstream: the gateway
// closes its side, and the endpoint has nothing in flight.
func TestLeavingAStreamFreesTheUpstream(t *testing.T) {
	left := make(chan struct{})
	up := startUpstream(t, "events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: hello\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // an idle stream: only the client leaving ends it
		close(left)
	})
	g, url, c := startGateway(t, Config{}, target("dev", "events", up))
	req := mustRequest(t, http.MethodGet, url+"/", nil)
	req.Host = "events.dev.berth.localhost"
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := readEvent(bufio.NewReader(res.Body)); err != nil || ev != "hello" {
		t.Fatalf("first event %q %v", ev, err)
	}
	res.Body.Close()
	c.CloseIdleConnections()
	select {
	case <-left:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream's stream was not ended after the client left")
	}
	testutil.WaitFor(t, 10*time.Second, "the stream to leave the in-flight count", func() bool { return g.InFlight("events") == 0 })
}
