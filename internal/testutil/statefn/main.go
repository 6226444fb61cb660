// Command statefn is the function Berth's end-to-end tests run to check an
// environment's state from inside an instance, as a user's function would
// use it: the AWS SDK with its default configuration (the endpoint, key
// pair and region come from the variables Berth sets) and the KV store
// over plain HTTP with the same key pair.
//
//	POST /visit        count the visit in KV (compare-and-swap), store the
//	                   body as the object bodies/NNNNNN of $BUCKET ("bodies")
//	GET  /peek?env=E&bucket=B   try to list bucket B through environment E's
//	                   S3 endpoint; answers {"ok":…,"error":…}; with
//	                   &dial=own it connects to its own environment's
//	                   endpoint whatever the name (as if E's name resolved)
//	GET  /presign?env=E&bucket=B&key=K   a GET URL for object K of bucket B
//	                   on environment E's endpoint, presigned with this
//	                   instance's key pair (its secret stays inside)
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func main() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatalf("aws config: %v", err)
	}
	client := s3.NewFromConfig(cfg)
	bucket := os.Getenv("BUCKET")
	if bucket == "" {
		bucket = "bodies"
	}
	http.HandleFunc("/visit", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n, err := countVisit(r.Context())
		if err != nil {
			http.Error(w, "kv: "+err.Error(), http.StatusBadGateway)
			return
		}
		key := fmt.Sprintf("bodies/%06d", n)
		if _, err := client.PutObject(r.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: &key,
			Body: strings.NewReader(string(body)), ContentType: aws.String("text/plain")}); err != nil {
			http.Error(w, "s3: "+err.Error(), http.StatusBadGateway)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"visits": n, "key": key})
	})
	http.HandleFunc("/peek", func(w http.ResponseWriter, r *http.Request) {
		env, b := r.URL.Query().Get("env"), r.URL.Query().Get("bucket")
		c := s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.BaseEndpoint = aws.String("http://s3." + env + ".berth.localhost")
			o.UsePathStyle = true
			o.RetryMaxAttempts = 1
			if r.URL.Query().Get("dial") == "own" {
				o.HTTPClient = ownEndpointClient()
			}
		})
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &b})
		res := map[string]any{"ok": err == nil}
		if err != nil {
			res["error"] = err.Error()
		} else {
			var keys []string
			for _, o := range out.Contents {
				keys = append(keys, aws.ToString(o.Key))
			}
			res["keys"] = keys
		}
		json.NewEncoder(w).Encode(res)
	})
	http.HandleFunc("/presign", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		c := s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.BaseEndpoint = aws.String("http://s3." + q.Get("env") + ".berth.localhost")
			o.UsePathStyle = true
		})
		req, err := s3.NewPresignClient(c).PresignGetObject(r.Context(), &s3.GetObjectInput{
			Bucket: aws.String(q.Get("bucket")), Key: aws.String(q.Get("key"))})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, req.URL)
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "statefn\n") })
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	log.Fatal(http.ListenAndServe(":"+port, nil))
}

// ownEndpointClient connects to this environment's S3 endpoint (the
// address its name resolves to) whatever host a request names.
func ownEndpointClient() *http.Client {
	u, _ := url.Parse(os.Getenv("AWS_ENDPOINT_URL_S3"))
	own := u.Host
	if u.Port() == "" {
		own = net.JoinHostPort(u.Hostname(), "80")
	}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, own)
		},
	}}
}

// countVisit adds one to the key "visits" with compare-and-swap, retrying
// when another instance got there first.
func countVisit(ctx context.Context) (int, error) {
	base := os.Getenv("BERTH_KV_URL") + "/visits"
	for attempt := 0; attempt < 20; attempt++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base, nil)
		req.SetBasicAuth(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		n, cond, condValue := 0, "If-None-Match", "*"
		switch res.StatusCode {
		case http.StatusOK:
			n, _ = strconv.Atoi(string(b))
			cond, condValue = "If-Match", res.Header.Get("X-Berth-Revision")
		case http.StatusNotFound:
		default:
			return 0, fmt.Errorf("get visits: %s %s", res.Status, b)
		}
		req, _ = http.NewRequestWithContext(ctx, http.MethodPut, base, strings.NewReader(strconv.Itoa(n+1)))
		req.SetBasicAuth(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"))
		req.Header.Set(cond, condValue)
		res, err = http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		b, _ = io.ReadAll(res.Body)
		res.Body.Close()
		switch res.StatusCode {
		case http.StatusOK:
			return n + 1, nil
		case http.StatusConflict:
			continue
		default:
			return 0, fmt.Errorf("put visits: %s %s", res.Status, b)
		}
	}
	return 0, fmt.Errorf("visits changed 20 times under us")
}
