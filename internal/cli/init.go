package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/build"
)

// newInitCommand writes a function that serves the platform's contract
// ($PORT, SIGTERM, logs on stdout) and its manifest, so that init, build
// and apply (or deploy) are the whole loop.
func newInitCommand(o *options) *cobra.Command {
	var runtime string
	cmd := &cobra.Command{
		Use:   "init --runtime go|python|node|go-lambda|node-lambda|go-wasm NAME",
		Short: "Write a function template and its berth.yaml in ./NAME",
		Long: "Write a function in ./NAME that serves HTTP on $PORT (8080 by default), stops cleanly on\n" +
			"SIGTERM and logs to stdout, with a berth.yaml Function manifest naming the image NAME:v1.\n" +
			"Then: berth deploy NAME (or berth build NAME -t NAME:v1 && berth apply -f NAME/berth.yaml).\n" +
			"go-lambda and node-lambda write an AWS Lambda handler (aws-lambda-go's lambda.Start, Node's\n" +
			"exports.handler) instead: Berth runs it behind the Lambda Runtime API, HTTP requests arriving\n" +
			"as API Gateway v2 events (docs/aws.md).",
		Example: "  berth init --runtime python hello && berth deploy hello --wait\n  curl -H 'Host: hello.default.berth.localhost' http://127.0.0.1:8080/",
		Args:    exactArgs(1, "the function's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !dnsLabel.MatchString(name) {
				return UsageError(fmt.Errorf("%q is not a valid name: lower-case letters, digits and '-', starting with a letter, at most 63 characters", name))
			}
			if runtime == "" {
				return UsageError(fmt.Errorf("--runtime is required: go, python, node, go-lambda, node-lambda or go-wasm"))
			}
			rt, err := build.ParseRuntime(runtime)
			if err != nil {
				return err
			}
			if _, err := os.Stat(name); err == nil {
				return v1.Conflict("%s already exists; init writes a new directory", name)
			}
			files := templateFiles(rt, name)
			if err := os.Mkdir(name, 0o755); err != nil {
				return &v1.Error{Kind: v1.ErrInvalid, File: name, Message: pathMessage(err)}
			}
			paths := make([]string, 0, len(files))
			for p := range files {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			for _, p := range paths {
				if err := os.WriteFile(filepath.Join(name, p), []byte(files[p]), 0o644); err != nil {
					return err
				}
				fmt.Fprintf(o.out, "wrote %s\n", filepath.Join(name, p))
			}
			if rt == build.RuntimeGoLambda {
				fmt.Fprintf(o.errOut, "First: (cd %s && go mod tidy)   to fetch aws-lambda-go and write go.sum\n", name)
			}
			fmt.Fprintf(o.errOut, "Next: berth deploy %s --wait   (or berth build %s -t %s:v1 && berth apply -f %s/berth.yaml)\n", name, name, name, name)
			return nil
		},
	}
	cmd.Flags().StringVar(&runtime, "runtime", "", "go, python, node, go-lambda, node-lambda, or go-wasm (a WebAssembly function run in the server)")
	return cmd
}

var dnsLabel = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

func templateFiles(rt build.Runtime, name string) map[string]string {
	r := strings.NewReplacer("NAME", name)
	files := map[string]string{"berth.yaml": r.Replace(manifestTemplate)}
	switch rt {
	case build.RuntimeGoWasm:
		files["berth.yaml"] = r.Replace(wasmManifestTemplate)
		files["go.mod"] = r.Replace("module NAME\n\ngo 1.22\n")
		files["main.go"] = r.Replace(goWasmTemplate)
	case build.RuntimeGo:
		files["go.mod"] = r.Replace("module NAME\n\ngo 1.22\n")
		files["main.go"] = r.Replace(goTemplate)
	case build.RuntimeGoLambda:
		files["go.mod"] = r.Replace("module NAME\n\ngo 1.22\n\nrequire github.com/aws/aws-lambda-go v1.55.1\n")
		files["main.go"] = r.Replace(goLambdaTemplate)
	case build.RuntimePython:
		files["main.py"] = r.Replace(pythonTemplate)
		files["requirements.txt"] = "# One requirement per line; berth build installs them with pip into the image.\n"
	case build.RuntimeNode:
		files["package.json"] = r.Replace(packageTemplate)
		files["index.js"] = r.Replace(nodeTemplate)
	case build.RuntimeNodeLambda:
		files["package.json"] = r.Replace(packageTemplate)
		files["index.js"] = r.Replace(nodeLambdaTemplate)
	}
	return files
}

const manifestTemplate = `# berth deploy . builds the image and applies this manifest with its digest.
apiVersion: berth.dev/v1
kind: Function
metadata:
  name: NAME
spec:
  image: NAME:v1
  concurrency: 10
  scale: {max: 5, idleTimeout: 60s}
  timeout: 30s
`

const wasmManifestTemplate = `# berth deploy . builds the module (GOOS=wasip1) and applies this manifest
# with its digest. A Wasm function runs in the server: a fresh instance per
# request, no cold start to speak of (docs/wasm.md).
apiVersion: berth.dev/v1
kind: Function
metadata:
  name: NAME
spec:
  runtime: wasm
  image: NAME:v1
  concurrency: 10
  scale: {max: 10}
  timeout: 10s
  resources: {memory: 64Mi}
`

const goWasmTemplate = `// NAME is a WebAssembly function: built with GOOS=wasip1 GOARCH=wasm, run
// by Berth in-process, one fresh instance per request. The request comes
// in as CGI (environment variables and stdin) and the response goes out
// on stdout; net/http/cgi does both, so the handler is ordinary net/http.
// Log to stderr: stdout is the response.
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cgi"
	"os"
)

func main() {
	err := cgi.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(os.Stderr, "%s %s\n", r.Method, r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"message":  "Hello from NAME",
			"runtime":  "go-wasm",
			"revision": os.Getenv("BERTH_REVISION"),
		})
	}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`

const goTemplate = `// NAME serves HTTP on $PORT, logs to stdout and stops cleanly on SIGTERM,
// as Berth expects of a function.
package main

import (
	"context"
	"encoding/json"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	log.SetOutput(os.Stdout)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s %s", r.Method, r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"message":  "Hello from NAME",
			"runtime":  "go",
			"revision": os.Getenv("BERTH_REVISION"),
		})
	})
	srv := &http.Server{Addr: ":" + port, Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		// Finish the requests in flight, then exit.
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("NAME listening on :%s", port)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
	log.Print("NAME stopped")
}
`

const pythonTemplate = `"""NAME serves HTTP on $PORT, logs to stdout and stops cleanly on SIGTERM,
as Berth expects of a function."""
import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "message": "Hello from NAME",
            "runtime": "python",
            "revision": os.environ.get("BERTH_REVISION", ""),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, fmt, *args):
        print("%s %s" % (self.command, self.path), flush=True)


def main():
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("", port), Handler)
    # Finish the requests in flight, then exit.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("NAME listening on :%d" % port, flush=True)
    server.serve_forever()
    server.server_close()
    print("NAME stopped", flush=True)


if __name__ == "__main__":
    main()
`

const packageTemplate = `{
  "name": "NAME",
  "version": "1.0.0",
  "private": true,
  "main": "index.js",
  "dependencies": {}
}
`

const nodeTemplate = `// NAME serves HTTP on $PORT, logs to stdout and stops cleanly on SIGTERM,
// as Berth expects of a function.
const http = require("http");

const port = Number(process.env.PORT || 8080);

const server = http.createServer((req, res) => {
  console.log(req.method + " " + req.url);
  const body = JSON.stringify({
    message: "Hello from NAME",
    runtime: "node",
    revision: process.env.BERTH_REVISION || "",
  });
  res.writeHead(200, { "Content-Type": "application/json" });
  res.end(body);
});

process.on("SIGTERM", () => {
  // Finish the requests in flight, then exit.
  server.close(() => {
    console.log("NAME stopped");
    process.exit(0);
  });
  server.closeIdleConnections();
});

server.listen(port, () => console.log("NAME listening on :" + port));
`

const goLambdaTemplate = `// NAME is an AWS Lambda handler, unchanged from Lambda: Berth serves it
// the Lambda Runtime API. HTTP requests through Berth's gateway arrive as
// API Gateway HTTP API (v2) events; invocations through the Lambda API
// (aws lambda invoke), async ones and workflow tasks pass their event as
// it is.
package main

import (
	"context"
	"encoding/json"
	"log"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var http events.APIGatewayV2HTTPRequest
	if json.Unmarshal(raw, &http) == nil && http.RequestContext.HTTP.Method != "" {
		log.Printf("%s %s", http.RequestContext.HTTP.Method, http.RawPath)
		body, _ := json.Marshal(map[string]string{"message": "Hello from NAME", "runtime": "go-lambda"})
		return events.APIGatewayV2HTTPResponse{
			StatusCode: 200,
			Headers:    map[string]string{"Content-Type": "application/json"},
			Body:       string(body),
		}, nil
	}
	return map[string]any{"message": "Hello from NAME", "event": raw}, nil
}

func main() { lambda.Start(handle) }
`

const nodeLambdaTemplate = `// NAME is an AWS Lambda handler, unchanged from Lambda: Berth's runtime
// loop calls it through the Lambda Runtime API. HTTP requests through
// Berth's gateway arrive as API Gateway HTTP API (v2) events and the
// returned object is the HTTP response; invocations through the Lambda
// API (aws lambda invoke), async ones and workflow tasks pass their event
// as it is, and get the returned value.
exports.handler = async (event, context) => {
  if (event && event.requestContext && event.requestContext.http) {
    console.log(event.requestContext.http.method + " " + event.rawPath);
    return {
      statusCode: 200,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message: "Hello from NAME", runtime: "node-lambda", requestId: context.awsRequestId }),
    };
  }
  return { message: "Hello from NAME", event };
};
`
