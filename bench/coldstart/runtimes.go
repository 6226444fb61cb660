package main

// Cold starts per runtime (-runtimes): the Go echo image beside Python and
// Node functions made by `berth init` and built by Berth's own builder
// (a hello handler, and one that imports modules a real handler would),
// and Lambda handlers (go-lambda, node-lambda: the bridge, then the
// handler's init, then an API Gateway event), each at zero with a
// prepared standby, interleaved so all see the same machine, through the
// gateway.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend/local"
	"berth.dev/berth/internal/build"
	"berth.dev/berth/internal/testutil"
)

// pythonImports and nodeImports are prepended to the templates' handlers:
// what a handler that parses, stores, signs and talks to the web loads at
// init. (Python's from its standard library: PyPI is not reachable here;
// Node's built-ins likewise.)
const (
	pythonImports = "import asyncio, decimal, sqlite3, uuid, hashlib, hmac, logging, datetime, urllib.request, http.client, ssl, email.mime.multipart, xml.etree.ElementTree, csv, zipfile, base64\n"
	nodeImports   = "const crypto = require('crypto'), zlib = require('zlib'), http2 = require('http2'), https = require('https'), url = require('url'), util = require('util'), stream = require('stream'), events = require('events'), querystring = require('querystring'), dns = require('dns');\n"
)

// runtimeFunctions, when set, limits -runtimes to these functions.
var runtimeFunctions string

// wanted says whether -functions includes name.
func wanted(name string) bool {
	if runtimeFunctions == "" {
		return true
	}
	for _, f := range strings.Split(runtimeFunctions, ",") {
		if strings.TrimSpace(f) == name {
			return true
		}
	}
	return false
}

type fnImage struct {
	name, image, tar string
}

func runtimes(ctx context.Context, dir, sock, goTar string, n int) error {
	bin := filepath.Join(dir, "berth")
	if err := buildBerth(bin); err != nil {
		return err
	}
	var fns []fnImage
	if wanted("go-hello") {
		fns = append(fns, fnImage{name: "go-hello", image: image, tar: goTar})
	}
	for _, rt := range []string{"python", "node", "go-lambda", "node-lambda"} {
		for _, variant := range []string{"hello", "imports"} {
			if variant == "imports" && rt == "go-lambda" {
				continue // a Go program's imports are linked in: no init cost to see
			}
			name := rt + "-" + variant
			if !wanted(name) {
				continue
			}
			src := filepath.Join(dir, "src")
			os.MkdirAll(src, 0o755)
			cmd := exec.Command(bin, "init", "--runtime", rt, name)
			cmd.Dir = src
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("berth init %s: %v %s", name, err, out)
			}
			if variant == "imports" {
				main, extra := "main.py", pythonImports
				if rt == "node" || rt == "node-lambda" {
					main, extra = "index.js", nodeImports
				}
				p := filepath.Join(src, name, main)
				raw, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				if err := os.WriteFile(p, []byte(extra+string(raw)), 0o644); err != nil {
					return err
				}
			}
			if rt == "go-lambda" {
				// As init tells a user: fetch aws-lambda-go and write
				// go.sum (the module cache has it from the build tests).
				tidy := exec.Command("go", "mod", "tidy")
				tidy.Dir = filepath.Join(src, name)
				if out, err := tidy.CombinedOutput(); err != nil {
					return fmt.Errorf("go mod tidy in %s: %v %s", name, err, out)
				}
			}
			tar := filepath.Join(dir, name+".tar")
			f, err := os.Create(tar)
			if err != nil {
				return err
			}
			ref := "berth.bench/" + name + ":cold"
			fmt.Fprintf(os.Stderr, "building %s (the Debian base is built once per machine and cached)\n", ref)
			_, err = build.Build(ctx, build.Options{Dir: filepath.Join(src, name), Ref: ref, Runtime: build.Runtime(rt)}, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("build %s: %w", name, err)
			}
			fns = append(fns, fnImage{name: name, image: ref, tar: tar})
		}
	}

	// The same functions on two servers at once, hits interleaved: one
	// with the default frozen standbys (started, initialised, frozen; a
	// wake is a thaw), one whose standbys are created only
	// (--standby-memory 0; a wake starts the program).
	servers := []*berthServer{
		{bin: bin, data: filepath.Join(dir, "rdata"), sock: sock, logPath: filepath.Join(dir, "runtimes.log"),
			namespace: "coldruntimes", pool: "10.224.0.0/16", bridges: "bcoldr"},
		{bin: bin, data: filepath.Join(dir, "rdata-created"), sock: sock, logPath: filepath.Join(dir, "runtimes-created.log"),
			namespace: "coldruntimesc", pool: "10.225.0.0/16", bridges: "bcoldc", extra: []string{"--standby-memory", "0"}},
	}
	modes := []string{"frozen standby", "created standby"}
	for _, s := range servers {
		if err := s.start(ctx); err != nil {
			return err
		}
		defer func() {
			s.stop()
			testutil.RemoveHostNetwork(s.bridges)
		}()
		for _, fn := range fns {
			f, err := os.Open(fn.tar)
			if err != nil {
				return err
			}
			_, err = s.c.ImportImage(ctx, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("import %s: %w", fn.name, err)
			}
			manifest := fmt.Sprintf(`{"apiVersion":"berth.dev/v1","kind":"Function","metadata":{"name":%q,"environment":"default"},
"spec":{"image":%q,"scale":{"max":1,"idleTimeout":"1s"}}}`, fn.name, fn.image)
			if err := s.apply(ctx, manifest); err != nil {
				return fmt.Errorf("apply %s: %w", fn.name, err)
			}
		}
	}
	got := make([][]series, len(servers))
	for m := range servers {
		got[m] = make([]series, len(fns))
		for i, fn := range fns {
			got[m][i].name = fn.name
		}
	}
	for range n {
		for i, fn := range fns {
			for m, s := range servers {
				if err := s.atZero(ctx, fn.name, true); err != nil {
					return err
				}
				d, err := s.hit(fn.name, "/")
				if err != nil {
					return fmt.Errorf("%s (%s): %w", fn.name, modes[m], err)
				}
				got[m][i].d = append(got[m][i].d, d)
			}
		}
	}
	fmt.Printf("\ncold starts per runtime, %d each, at zero with a prepared standby, through the gateway (request to response)\n", n)
	fmt.Printf("%-22s %-16s %10s %10s %10s %10s\n", "function", "woken from", "p50", "p90", "p99", "max")
	for i := range fns {
		for m := range servers {
			sr := got[m][i]
			fmt.Printf("%-22s %-16s %10s %10s %10s %10s\n", sr.name, modes[m], ms(sr.pct(0.5)), ms(sr.pct(0.9)), ms(sr.pct(0.99)), ms(sr.pct(1)))
		}
	}
	for m, s := range servers {
		sums, counts, err := s.phaseMeans(ctx)
		if err != nil {
			continue
		}
		fmt.Printf("mean of each phase per function, %s (berth_cold_start_phase_seconds):\n", modes[m])
		for _, fn := range fns {
			var parts []string
			for _, p := range v1.ColdStartPhases {
				if c := counts[fn.name]; c > 0 {
					parts = append(parts, fmt.Sprintf("%s %.1fms", p, sums[fn.name][p]/c*1000))
				}
			}
			fmt.Printf("  %-28s %s\n", fn.name, strings.Join(parts, ", "))
		}
	}
	// What a standby holds, per runtime and kind (the instance's cgroup).
	fmt.Println("memory of one prepared standby (its container's cgroup):")
	for m, s := range servers {
		for _, fn := range fns {
			if err := s.atZero(ctx, fn.name, true); err != nil {
				return err
			}
			mem, err := standbyMemory(ctx, s, fn.name)
			if err != nil {
				fmt.Printf("  %-22s %-16s %v\n", fn.name, modes[m], err)
				continue
			}
			fmt.Printf("  %-22s %-16s %6.1f MiB\n", fn.name, modes[m], float64(mem)/(1<<20))
		}
	}
	return nil
}

// standbyMemory reads what name's prepared standby holds: its container's
// memory cgroup (containerd's default path, /NAMESPACE/ID).
func standbyMemory(ctx context.Context, s *berthServer, name string) (int64, error) {
	var fn v1.Function
	if err := s.c.Get(ctx, v1.KindFunction, "default", name, &fn); err != nil {
		return 0, err
	}
	for _, i := range fn.Status.Instances {
		if i.Phase != v1.PhaseStandby {
			continue
		}
		id := local.ContainerID("default", i.Name)
		for _, p := range []string{
			filepath.Join("/sys/fs/cgroup/memory", s.namespace, id, "memory.usage_in_bytes"),
			filepath.Join("/sys/fs/cgroup", s.namespace, id, "memory.current"),
		} {
			if raw, err := os.ReadFile(p); err == nil {
				return strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
			}
		}
		return 0, fmt.Errorf("no memory cgroup found for %s", id)
	}
	return 0, fmt.Errorf("no prepared standby")
}
