// Package wasmhttp makes outgoing HTTP calls from a Berth Wasm function: a
// Go program built with GOOS=wasip1 GOARCH=wasm that serves with
// net/http/cgi. WASI preview 1 has no sockets; the calls go through the
// host module berth_http (its ABI is in docs/wasm.md), which sends them
// under the function's environment's egress policy: the environment's own
// services and functions by name (http://orders/, http://orders.ENV/,
// s3.ENV, kv.ENV) through its gateway, with its identity, and outside
// addresses as its containers reach them; never another environment, nor
// the host.
//
// Use Client, or Transport in a client of your own, as any net/http
// client:
//
//	res, err := wasmhttp.Get("http://orders/api/orders")
//
// Each call blocks the module until it is answered (a Wasm instance runs
// one thread) and is bounded by the function's timeout; a response's body
// is read whole by the host, up to 16 MiB. Redirects are followed by the
// client, each hop checked again by the host. A call the host refuses or
// cannot make returns an *Error (errors.Is(err, wasmhttp.ErrRefused) and
// so on, through the *url.Error net/http wraps it in).
//
// The package uses only the standard library, so it can be copied into a
// module that cannot require berth.dev/berth. Outside a Wasm function every
// call fails with ErrUnavailable.
package wasmhttp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Transport sends each request through the Berth host.
var Transport http.RoundTripper = transport{}

// Client is an http.Client on Transport.
var Client = &http.Client{Transport: Transport}

// Get is Client.Get.
func Get(url string) (*http.Response, error) { return Client.Get(url) }

// Post is Client.Post.
func Post(url, contentType string, body io.Reader) (*http.Response, error) {
	return Client.Post(url, contentType, body)
}

// Do is Client.Do.
func Do(req *http.Request) (*http.Response, error) { return Client.Do(req) }

// Code says why the host did not answer a call with a response.
type Code uint32

// The host's result codes (docs/wasm.md).
const (
	CodeInvalid     Code = 1 // the request is malformed or its URL not absolute http(s)
	CodeRefused     Code = 2 // the environment's egress policy refused it
	CodeFailed      Code = 3 // the connection or the exchange failed
	CodeTooLarge    Code = 4 // the request or the response is over its bound
	CodeTimeout     Code = 5 // the function's time ran out during the call
	CodeUnavailable Code = 6 // no outgoing calls here
	CodeBadHandle   Code = 7
	CodeBadMemory   Code = 8
)

var codeNames = map[Code]string{
	CodeInvalid: "invalid request", CodeRefused: "refused", CodeFailed: "failed", CodeTooLarge: "too large",
	CodeTimeout: "timeout", CodeUnavailable: "unavailable", CodeBadHandle: "bad handle", CodeBadMemory: "bad memory",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code %d", uint32(c))
}

// Error is a call the host refused or could not make.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "berth: " + e.Code.String()
	}
	return "berth: " + e.Code.String() + ": " + e.Message
}

// Is matches the sentinels below by code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrInvalid     = &Error{Code: CodeInvalid}
	ErrRefused     = &Error{Code: CodeRefused}
	ErrFailed      = &Error{Code: CodeFailed}
	ErrTooLarge    = &Error{Code: CodeTooLarge}
	ErrTimeout     = &Error{Code: CodeTimeout}
	ErrUnavailable = &Error{Code: CodeUnavailable}
)

type transport struct{}

func (transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || !req.URL.IsAbs() {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, &Error{Code: CodeInvalid, Message: "the request's URL is not absolute"}
	}
	var wire bytes.Buffer
	// Proxy form: the absolute URL in the request line, so the host knows
	// the scheme. It closes the body.
	if err := req.WriteProxy(&wire); err != nil {
		return nil, err
	}
	data, code := call(wire.Bytes())
	if code != 0 {
		return nil, &Error{Code: Code(code), Message: string(data)}
	}
	return http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), req)
}

// errShortRead is a host that said it kept more than it gave.
var errShortRead = errors.New("berth: the host's response ended early")
