package wasm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	v1 "berth.dev/berth/api/v1"
)

// Egress is what the host needs of the platform's egress policy (package
// egress): each environment's transport, which connects only where the
// environment's containers may (never another environment's network, the
// host, link-local or reserved addresses, nor what the operator denies)
// and sends the platform's own names (NAME, NAME.ENV, s3.ENV…) through the
// environment's gateway listener, where they are routed as that
// environment's calls with its allowFrom applied.
type Egress interface {
	Transport(env string) http.RoundTripper
	CheckURL(env, rawURL string) error
}

// The host module a Wasm function imports to make outgoing HTTP calls;
// docs/wasm.md has the ABI, sdk/wasmhttp the Go guest side.
const hostModule = "berth_http"

// Results of the host functions (docs/wasm.md).
const (
	callOK          = 0
	callInvalid     = 1 // the request is malformed or its URL not absolute http(s)
	callRefused     = 2 // the environment's egress policy refused the address or name
	callFailed      = 3 // the connection or the exchange failed
	callTooLarge    = 4 // the request or the response is over its bound
	callTimeout     = 5 // the invocation's time ran out during the call
	callUnavailable = 6 // this server makes no outgoing calls for Wasm functions
	callBadHandle   = 7 // no such open response
	callBadMemory   = 8 // a pointer or length outside the module's memory
)

// Bounds of outgoing calls, per invocation.
const (
	// MaxCallRequestBytes bounds a request as the module writes it.
	MaxCallRequestBytes = 16 << 20
	// MaxCallResponseBytes bounds a response's body as the host reads it.
	MaxCallResponseBytes = 16 << 20
	// maxCallsOpen bounds the responses a module holds unread or unclosed.
	maxCallsOpen = 16
	// maxCallBytesHeld bounds the bytes those hold together.
	maxCallBytesHeld = 32 << 20
)

// hostFunctions are the names and signatures of the host module's
// functions; a module importing anything else of it is refused.
var hostFunctions = map[string]struct{ params, results int }{
	"send":  {3, 1},
	"read":  {4, 1},
	"close": {1, 1},
}

// calls is one invocation's outgoing calls: who makes them and the
// responses the module has not closed yet.
type calls struct {
	h      *Host
	env    string
	fn     string
	open   map[uint32]*heldResponse
	next   uint32
	held   int
	tracer trace.Tracer
	// release gives up the instance's start slot: a call waits.
	release func()
}

type heldResponse struct {
	data []byte
	off  int
}

type callsKey struct{}

// withCalls gives an invocation's context what the host functions need.
func (fn *function) withCalls(ctx context.Context, release func()) context.Context {
	return context.WithValue(ctx, callsKey{}, &calls{h: fn.h, env: fn.env, fn: fn.name, open: map[uint32]*heldResponse{}, tracer: fn.h.tracer, release: release})
}

// instantiateHostModule adds the host module to rt, the runtime of one
// function's compiled module.
func instantiateHostModule(ctx context.Context, rt wazero.Runtime) error {
	i32 := api.ValueTypeI32
	b := rt.NewHostModuleBuilder(hostModule)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostSend), []api.ValueType{i32, i32, i32}, []api.ValueType{i32}).
		WithParameterNames("request", "request_len", "result").Export("send")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostRead), []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}).
		WithParameterNames("handle", "buf", "buf_len", "n").Export("read")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostClose), []api.ValueType{i32}, []api.ValueType{i32}).
		WithParameterNames("handle").Export("close")
	_, err := b.Instantiate(ctx)
	return err
}

// hostSend: send(request, request_len, result) -> code. It reads the
// request (HTTP/1.1 in proxy form: an absolute URL in the request line, as
// Go's Request.WriteProxy writes it), sends it under the environment's
// egress policy, and keeps the response (HTTP/1.1, as Response.Write
// writes it) or, for a code other than 0, the error's message, for read.
// It writes the handle and the length of what it kept at result (two
// little-endian u32).
func hostSend(ctx context.Context, m api.Module, stack []uint64) {
	reqPtr, reqLen, out := api.DecodeU32(stack[0]), api.DecodeU32(stack[1]), api.DecodeU32(stack[2])
	c, _ := ctx.Value(callsKey{}).(*calls)
	code, data := callUnavailable, []byte("this server makes no outgoing calls for Wasm functions")
	switch {
	case c == nil || c.h.cfg.Egress == nil:
	case len(c.open) >= maxCallsOpen:
		code, data = callTooLarge, []byte(fmt.Sprintf("%d responses are open: close one (Body.Close) before the next call", maxCallsOpen))
	case reqLen > MaxCallRequestBytes:
		code, data = callTooLarge, []byte(fmt.Sprintf("the request is %d bytes; the most is %d", reqLen, MaxCallRequestBytes))
	default:
		raw, ok := m.Memory().Read(reqPtr, reqLen)
		if !ok {
			stack[0] = callBadMemory
			return
		}
		code, data = c.send(ctx, bytes.Clone(raw))
	}
	if c != nil && c.held+len(data) > maxCallBytesHeld {
		code, data = callTooLarge, []byte(fmt.Sprintf("the responses held would exceed %d bytes: close the earlier ones first", maxCallBytesHeld))
	}
	var handle uint32
	if c != nil {
		c.next++
		handle = c.next
		c.open[handle] = &heldResponse{data: data}
		c.held += len(data)
	}
	mem := m.Memory()
	if !mem.WriteUint32Le(out, handle) || !mem.WriteUint32Le(out+4, uint32(len(data))) {
		stack[0] = callBadMemory
		return
	}
	stack[0] = uint64(code)
}

// hostRead: read(handle, buf, buf_len, n) -> code copies the next bytes of
// what send kept into buf and their count to n (0 at the end).
func hostRead(ctx context.Context, m api.Module, stack []uint64) {
	handle, buf, bufLen, nPtr := api.DecodeU32(stack[0]), api.DecodeU32(stack[1]), api.DecodeU32(stack[2]), api.DecodeU32(stack[3])
	c, _ := ctx.Value(callsKey{}).(*calls)
	var r *heldResponse
	if c != nil {
		r = c.open[handle]
	}
	if r == nil {
		stack[0] = callBadHandle
		return
	}
	n := min(int(bufLen), len(r.data)-r.off)
	if !m.Memory().Write(buf, r.data[r.off:r.off+n]) || !m.Memory().WriteUint32Le(nPtr, uint32(n)) {
		stack[0] = callBadMemory
		return
	}
	r.off += n
	stack[0] = callOK
}

// hostClose: close(handle) -> code lets go of what send kept.
func hostClose(ctx context.Context, _ api.Module, stack []uint64) {
	handle := api.DecodeU32(stack[0])
	c, _ := ctx.Value(callsKey{}).(*calls)
	if c == nil || c.open[handle] == nil {
		stack[0] = callBadHandle
		return
	}
	c.held -= len(c.open[handle].data)
	delete(c.open, handle)
	stack[0] = callOK
}

// send makes one call for the module and returns the response as wire
// bytes, or a code and a message.
func (c *calls) send(ctx context.Context, raw []byte) (int, []byte) {
	in, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return callInvalid, fmt.Appendf(nil, "malformed request: %v", err)
	}
	if !in.URL.IsAbs() {
		return callInvalid, fmt.Appendf(nil, "the request's URL %q is not absolute: write it in proxy form (Request.WriteProxy)", in.RequestURI)
	}
	target := in.URL.String()
	if err := c.h.cfg.Egress.CheckURL(c.env, target); err != nil {
		if v1.IsInvalid(err) {
			return callInvalid, []byte(err.Error())
		}
		return callRefused, []byte(err.Error())
	}
	body, err := io.ReadAll(in.Body)
	if err != nil {
		return callInvalid, fmt.Appendf(nil, "malformed request body: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, in.Method, target, bytes.NewReader(body))
	if err != nil {
		return callInvalid, []byte(err.Error())
	}
	for k, vs := range in.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Traceparent", "Tracestate":
			continue
		}
		req.Header[k] = vs
	}
	if in.Host != "" {
		req.Host = in.Host
	}
	if len(body) == 0 {
		req.Body, req.ContentLength = http.NoBody, 0
	}

	if c.tracer != nil {
		var span trace.Span
		ctx, span = c.tracer.Start(ctx, "wasm call "+req.Method+" "+req.URL.Hostname(), trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("http.request.method", req.Method), attribute.String("server.address", req.URL.Hostname())))
		defer span.End()
		req = req.WithContext(ctx)
		defer func() {
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
		}()
	}
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	if c.release != nil {
		c.release()
	}

	res, err := c.h.cfg.Egress.Transport(c.env).RoundTrip(req)
	if err != nil {
		code, msg := c.failure(ctx, req, err)
		return code, []byte(msg)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, MaxCallResponseBytes+1))
	if err != nil {
		code, msg := c.failure(ctx, req, err)
		return code, []byte(msg)
	}
	if len(b) > MaxCallResponseBytes {
		err = errors.New("response too large")
		return callTooLarge, fmt.Appendf(nil, "%s %s: the response's body is over %d bytes, the most a Wasm function may receive", req.Method, redactURL(req), MaxCallResponseBytes)
	}
	out := &http.Response{
		StatusCode: res.StatusCode, ProtoMajor: 1, ProtoMinor: 1,
		Header: res.Header.Clone(), ContentLength: int64(len(b)), Body: io.NopCloser(bytes.NewReader(b)),
	}
	out.Header.Del("Transfer-Encoding")
	out.Header.Del("Content-Length")
	var w bytes.Buffer
	if err := out.Write(&w); err != nil {
		return callFailed, []byte(err.Error())
	}
	return callOK, w.Bytes()
}

// failure sorts a failed call: the invocation's timeout, a refusal by the
// egress policy, or a failure of the network or the other side.
func (c *calls) failure(ctx context.Context, req *http.Request, err error) (int, string) {
	what := req.Method + " " + redactURL(req)
	switch {
	case ctx.Err() != nil:
		return callTimeout, fmt.Sprintf("%s: the function's time ran out during the call", what)
	case v1.KindOf(err) == v1.ErrForbidden:
		return callRefused, fmt.Sprintf("%s: %v", what, forbidden(err))
	}
	return callFailed, fmt.Sprintf("%s: %v", what, err)
}

// forbidden is the egress policy's own error, without the layers of the
// dialer around it.
func forbidden(err error) error {
	var e *v1.Error
	if errors.As(err, &e) {
		return e
	}
	return err
}

func redactURL(req *http.Request) string {
	u := *req.URL
	u.User, u.RawQuery = nil, ""
	return strings.TrimSuffix(u.String(), "?")
}
