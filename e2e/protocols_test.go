package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/testutil/echoapp"
)

// TestProtocolsThroughTheGateway: h2c, gRPC (health and a bidirectional
// stream), WebSockets and server-sent events reach a Service's container
// through the server's gateway, each with a real client; and a Function
// held at zero wakes for each of them (one function per protocol, so each
// request is a cold start).
func TestProtocolsThroughTheGateway(t *testing.T) {
	s := startServer(t)
	s.mustBerth("", "image", "import", imageV1)
	protos := []string{"h2c", "grpc", "ws", "sse"}
	manifest := fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: proto}
spec:
  image: %s
  replicas: 1
  readinessProbe: {httpGet: {path: /ready}, periodSeconds: 1}
`, echoV1)
	for _, p := range protos {
		manifest += fmt.Sprintf(`---
apiVersion: berth.dev/v1
kind: Function
metadata: {name: fn-%s}
spec:
  image: %s
  scale: {max: 1, idleTimeout: 5m}
  timeout: 30s
`, p, echoV1)
	}
	s.mustBerth(manifest, "apply", "-f", "-")
	testutil.WaitForState(t, 90*time.Second, "the service ready and every function at zero with a standby", func() (bool, string) {
		svc := s.service("default", "proto")
		state := fmt.Sprintf("service ready=%d; ", svc.Status.ReadyReplicas)
		ok := svc.Status.ReadyReplicas == 1
		for _, p := range protos {
			fn := s.function("default", "fn-"+p)
			standby := false
			for _, i := range fn.Status.Instances {
				standby = standby || i.Phase == v1.PhaseStandby
			}
			ok = ok && standby && fn.Status.ReadyInstances == 0
			state += "fn-" + p + ": " + fnState(fn) + "; "
		}
		return ok, state
	})

	check := map[string]func(t *testing.T, host string){
		"h2c":  func(t *testing.T, host string) { checkH2C(t, s.gateway, host) },
		"grpc": func(t *testing.T, host string) { checkGRPC(t, s.gateway, host) },
		"ws":   func(t *testing.T, host string) { checkWebSocket(t, s.gateway, host) },
		"sse":  func(t *testing.T, host string) { checkSSE(t, s.gateway, host) },
	}
	for _, p := range protos {
		t.Run(p+" to a service", func(t *testing.T) { check[p](t, "proto.default.berth.localhost") })
		t.Run(p+" to a function at zero", func(t *testing.T) {
			check[p](t, "fn-"+p+".default.berth.localhost")
			testutil.WaitForState(t, 10*time.Second, "the cold start counted", func() (bool, string) {
				fn := s.function("default", "fn-"+p)
				return fn.Status.ColdStarts >= 1, fnState(fn)
			})
		})
	}
}

func checkH2C(t *testing.T, gw, host string) {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "http://"+gw+"/", nil)
	req.Host = host
	res, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.ProtoMajor != 2 || !strings.Contains(string(body), `"version":"v1"`) {
		t.Fatalf("over h2c: %s %d %s", res.Proto, res.StatusCode, body)
	}
}

func checkGRPC(t *testing.T, gw, host string) {
	conn, err := grpc.NewClient("passthrough:///"+gw, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(host))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "echo"})
	if err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health check: %v %v", res, err)
	}
	stream, err := conn.NewStream(ctx, &echoapp.ChatDesc.Streams[0], echoapp.ChatMethod)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		msg := fmt.Sprintf("m%d", i)
		if err := stream.SendMsg(wrapperspb.String(msg)); err != nil {
			t.Fatal(err)
		}
		got := new(wrapperspb.StringValue)
		if err := stream.RecvMsg(got); err != nil || got.Value != "echo: "+msg {
			t.Fatalf("bidirectional stream, reply %d: %q %v", i, got.Value, err)
		}
	}
	stream.CloseSend()
	if err := stream.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
		t.Errorf("end of stream: %v", err)
	}
}

func checkWebSocket(t *testing.T, gw, host string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+gw+"/ws", &websocket.DialOptions{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for i := range 3 {
		msg := fmt.Sprintf("m%d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || string(got) != "echo: "+msg {
			t.Fatalf("reply %d: %q %v", i, got, err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

func checkSSE(t *testing.T, gw, host string) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+gw+"/events?n=3&ms=300", nil)
	req.Host = host
	req.Header.Set("Accept", "text/event-stream")
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q", ct)
	}
	br := bufio.NewReader(res.Body)
	for i := range 3 {
		var data string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("event %d: %v", i, err)
			}
			line = strings.TrimRight(line, "\r\n")
			if line == "" && data != "" {
				break
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				data = v
			}
		}
		if data != fmt.Sprintf("event %d", i) {
			t.Fatalf("event %d: %q", i, data)
		}
	}
}
