// Package wasmtest makes WebAssembly modules for tests and benchmarks:
// tiny hand-assembled ones (a CGI hello, a trap, a loop) and Go programs
// built with GOOS=wasip1 by the toolchain on the machine.
package wasmtest

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

func uleb(n int) []byte {
	var b []byte
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n != 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

func section(id byte, payload ...[]byte) []byte {
	var p []byte
	for _, x := range payload {
		p = append(p, x...)
	}
	return append(append([]byte{id}, uleb(len(p))...), p...)
}

func name(s string) []byte { return append(uleb(len(s)), s...) }

var header = []byte{0, 'a', 's', 'm', 1, 0, 0, 0}

// Hello is a ~150-byte WASI command that answers every request with a CGI
// response of body "hello\n": the smallest Wasm function there is.
func Hello() []byte { return Respond("Content-Type: text/plain\n\nhello\n") }

// Respond is a WASI command that writes out to stdout, whatever the request.
func Respond(out string) []byte {
	data := make([]byte, 16)
	binary.LittleEndian.PutUint32(data[0:], 16)
	binary.LittleEndian.PutUint32(data[4:], uint32(len(out)))
	data = append(data, out...)
	// func body: fd_write(1, iov=0, iovcnt=1, nwritten=8); drop
	body := []byte{0x00, 0x41, 0x01, 0x41, 0x00, 0x41, 0x01, 0x41, 0x08, 0x10, 0x00, 0x1a, 0x0b}
	m := append([]byte{}, header...)
	m = append(m, section(1, uleb(2),
		[]byte{0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f},
		[]byte{0x60, 0, 0})...)
	m = append(m, section(2, uleb(1), name("wasi_snapshot_preview1"), name("fd_write"), []byte{0x00, 0x00})...)
	m = append(m, section(3, uleb(1), uleb(1))...)
	m = append(m, section(5, uleb(1), []byte{0x00, 0x01})...)
	m = append(m, section(7, uleb(2), name("_start"), []byte{0x00, 0x01}, name("memory"), []byte{0x02, 0x00})...)
	m = append(m, section(10, uleb(1), uleb(len(body)), body)...)
	m = append(m, section(11, uleb(1), []byte{0x00, 0x41, 0x00, 0x0b}, uleb(len(data)), data)...)
	return m
}

// command is a module with one function, _start, of the given body
// (locals declaration included) and no imports.
func command(body []byte) []byte {
	m := append([]byte{}, header...)
	m = append(m, section(1, uleb(1), []byte{0x60, 0, 0})...)
	m = append(m, section(3, uleb(1), uleb(0))...)
	m = append(m, section(7, uleb(1), name("_start"), []byte{0x00, 0x00})...)
	m = append(m, section(10, uleb(1), uleb(len(body)), body)...)
	return m
}

// Trap is a WASI command whose _start executes unreachable.
func Trap() []byte { return command([]byte{0x00, 0x00, 0x0b}) }

// Loop is a WASI command whose _start never returns.
func Loop() []byte { return command([]byte{0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b}) }

// Library is a valid module that is not a command: it exports no _start.
func Library() []byte {
	m := append([]byte{}, header...)
	m = append(m, section(1, uleb(1), []byte{0x60, 0, 0})...)
	m = append(m, section(3, uleb(1), uleb(0))...)
	m = append(m, section(7, uleb(1), name("f"), []byte{0x00, 0x00})...)
	m = append(m, section(10, uleb(1), uleb(2), []byte{0x00, 0x0b})...)
	return m
}

// BuildGo builds the Go main package in dir (a directory with a go.mod, or
// a single-file package the standard library suffices for) with
// GOOS=wasip1 GOARCH=wasm, and returns the module's bytes.
func BuildGo(dir, out string) ([]byte, error) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	cmd := exec.Command(goBin, "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOFLAGS=-mod=mod")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build (GOOS=wasip1): %v: %s", err, strings.TrimSpace(string(b)))
	}
	return os.ReadFile(out)
}

// GoHandler is the source of a Go Wasm function for tests: one handler per
// path, through net/http/cgi.
const GoHandler = `package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"os"
	"strings"
	"time"
)

var hog [][]byte

func main() {
	cgi.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Method", r.Method)
			fmt.Fprintf(w, "%s %s?%s %s", r.Method, r.URL.Path, r.URL.RawQuery, b)
		case "/env":
			fmt.Fprint(w, os.Getenv(r.URL.Query().Get("name")))
		case "/file":
			b, err := os.ReadFile(r.URL.Query().Get("path"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			w.Write(b)
		case "/ls":
			es, err := os.ReadDir(r.URL.Query().Get("path"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			for _, e := range es {
				fmt.Fprintln(w, e.Name())
			}
		case "/status":
			w.WriteHeader(http.StatusTeapot)
			fmt.Fprint(w, "short and stout")
		case "/log":
			fmt.Fprintln(os.Stderr, "log:", r.URL.Query().Get("msg"))
			fmt.Fprint(w, "logged")
		case "/panic":
			panic("handler panicked on purpose")
		case "/oom":
			for {
				hog = append(hog, make([]byte, 1<<20))
			}
		case "/loop":
			for {
			}
		case "/sleep":
			d, _ := time.ParseDuration(r.URL.Query().Get("d"))
			time.Sleep(d)
			fmt.Fprint(w, "slept")
		default:
			fmt.Fprintf(w, "hello from wasm %s", strings.TrimPrefix(r.URL.Path, "/"))
		}
	}))
}
`

// BuildGoHandler writes GoHandler to a temporary directory under dir and
// builds it.
func BuildGoHandler(dir string) ([]byte, error) {
	src := filepath.Join(dir, "gohandler")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module handler\n\ngo 1.21\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(GoHandler), 0o644); err != nil {
		return nil, err
	}
	return BuildGo(src, filepath.Join(dir, "handler.wasm"))
}

// GoPlain is the source of the smallest Go Wasm function: a plain main
// that writes a CGI response, no net/http (whose package initialisation is
// about half of a Go instance's start).
const GoPlain = `package main

import "os"

func main() {
	os.Stdout.WriteString("Content-Type: text/plain\n\nhello\n")
}
`

// BuildGoPlain builds GoPlain under dir.
func BuildGoPlain(dir string) ([]byte, error) {
	src := filepath.Join(dir, "goplain")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module plain\n\ngo 1.21\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(GoPlain), 0o644); err != nil {
		return nil, err
	}
	return BuildGo(src, filepath.Join(dir, "plain.wasm"))
}

// BuildGoOutcall builds the Go Wasm function in internal/wasm/testdata/outcall
// (in this source tree: it imports berth.dev/berth/sdk/wasmhttp) into dir.
// It calls the URL of its query through the host: GET /get?url=U,
// POST /post?url=U.
func BuildGoOutcall(dir string) ([]byte, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return nil, fmt.Errorf("cannot tell where the outcall function's source is")
	}
	src := filepath.Join(filepath.Dir(file), "..", "testdata", "outcall")
	return BuildGo(src, filepath.Join(dir, "outcall.wasm"))
}

// Importing is a command whose _start does nothing and that imports
// module.field, a function of params i32 parameters and results i32
// results.
func Importing(module, field string, params, results int) []byte {
	sig := []byte{0x60, byte(params)}
	for range params {
		sig = append(sig, 0x7f)
	}
	sig = append(sig, byte(results))
	for range results {
		sig = append(sig, 0x7f)
	}
	m := append([]byte{}, header...)
	m = append(m, section(1, uleb(2), sig, []byte{0x60, 0, 0})...)
	m = append(m, section(2, uleb(1), name(module), name(field), []byte{0x00, 0x00})...)
	m = append(m, section(3, uleb(1), uleb(1))...)
	m = append(m, section(7, uleb(1), name("_start"), []byte{0x00, 0x01})...)
	m = append(m, section(10, uleb(1), uleb(2), []byte{0x00, 0x0b})...)
	return m
}
