package s3api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"berth.dev/berth/internal/objects"
	"berth.dev/berth/internal/sigv4"
)

// Identity is who a verified key acts as.
type Identity interface {
	// Allowed says whether the key may read (write false) or write the
	// objects of env: nil, or an error saying why not.
	CanAccess(env string, write bool) error
}

// KeyLookup finds the secret of an access key and whom it acts as; an
// unknown key is sigv4.ErrUnknownKey.
type KeyLookup func(ctx context.Context, accessKeyID string) (secret string, who Identity, err error)

// Observer counts requests by operation and status (the metrics).
type Observer interface {
	Observe(env, op string, status int, bytesIn, bytesOut int64, d time.Duration)
}

// Config is what the composition root gives the API.
type Config struct {
	Store *objects.Store
	Keys  KeyLookup
	// Region is what GetBucketLocation answers (default us-east-1).
	Region   string
	Logger   *slog.Logger
	Now      func() time.Time
	Observer Observer
}

// API serves the S3 API of every environment.
type API struct {
	cfg      Config
	log      *slog.Logger
	verifier *sigv4.Verifier
}

// New builds the API.
func New(cfg Config) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &API{cfg: cfg, log: cfg.Logger}
	a.verifier = &sigv4.Verifier{Service: "s3", Now: cfg.Now, Lookup: a.lookupSecret}
	return a
}

type identityKey struct{}

// lookupSecret is the verifier's lookup; the identity rides along in a
// holder put in the context by ServePlatform.
func (a *API) lookupSecret(ctx context.Context, id string) (string, error) {
	if a.cfg.Keys == nil {
		return "", sigv4.ErrUnknownKey
	}
	secret, who, err := a.cfg.Keys(ctx, id)
	if err != nil {
		return "", err
	}
	if h, ok := ctx.Value(identityKey{}).(*Identity); ok {
		*h = who
	}
	return secret, nil
}

// request is one S3 request being served.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	env    string
	bucket string
	key    string
	id     string // x-amz-request-id
	op     string
	status int
	body   io.Reader
	auth   *sigv4.Result
	in     int64
	out    int64
}

// ServePlatform answers a request for env's S3 endpoint; sub is the part
// of the host before "s3." (a virtual-host-style bucket), "" for
// path-style.
func (a *API) ServePlatform(w http.ResponseWriter, r *http.Request, env, sub string) {
	start := a.cfg.Now()
	q := &request{w: w, r: r, env: env, id: requestID()}
	w.Header().Set("X-Amz-Request-Id", q.id)
	w.Header().Set("Server", "Berth")
	path := r.URL.Path
	if sub != "" {
		q.bucket, q.key = sub, strings.TrimPrefix(path, "/")
	} else {
		q.bucket, q.key, _ = strings.Cut(strings.TrimPrefix(path, "/"), "/")
	}
	defer func() {
		if a.cfg.Observer != nil {
			a.cfg.Observer.Observe(env, q.op, q.status, q.in, q.out, a.cfg.Now().Sub(start))
		}
	}()
	var who Identity
	ctx := context.WithValue(r.Context(), identityKey{}, &who)
	res, err := a.verifier.Verify(r.WithContext(ctx))
	if err != nil {
		q.op = "Unauthenticated"
		a.fail(q, err)
		return
	}
	q.auth, q.body = res, &countingReader{r: res.Body, n: &q.in}
	defer res.Body.Close()
	handler, op, write := a.route(q)
	q.op = op
	if who == nil {
		a.fail(q, objects.Errorf(objects.CodeAccessDenied, "Access Denied"))
		return
	}
	if err := who.CanAccess(env, write); err != nil {
		a.fail(q, objects.Errorf(objects.CodeAccessDenied, "Access Denied: %v", err))
		return
	}
	if err := handler(q); err != nil {
		a.fail(q, err)
	}
}

func requestID() string {
	var b [8]byte
	rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

type handler func(q *request) error

// route picks the operation of a request: method, bucket or not, key or
// not, and the subresource in the query.
func (a *API) route(q *request) (handler, string, bool) {
	r := q.r
	qs := r.URL.Query()
	has := func(k string) bool { _, ok := qs[k]; return ok }
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	notImpl := func(what string) (handler, string, bool) {
		return func(q *request) error {
			return objects.Errorf(objects.CodeNotImplemented, "%s is not implemented by Berth's object store", what)
		}, what, !read
	}
	if q.bucket == "" {
		if r.Method == http.MethodGet {
			return a.listBuckets, "ListBuckets", false
		}
		return methodNotAllowed, "Unknown", !read
	}
	if q.key == "" {
		for _, sub := range []string{"policy", "acl", "cors", "lifecycle", "tagging", "website", "encryption",
			"replication", "logging", "notification", "object-lock", "ownershipControls", "publicAccessBlock",
			"accelerate", "requestPayment", "analytics", "metrics", "inventory", "intelligent-tiering", "versions"} {
			if has(sub) {
				return notImpl("Bucket " + sub)
			}
		}
		switch r.Method {
		case http.MethodPut:
			if has("versioning") {
				return notImpl("PutBucketVersioning")
			}
			return a.createBucket, "CreateBucket", true
		case http.MethodHead:
			return a.headBucket, "HeadBucket", false
		case http.MethodDelete:
			return a.deleteBucket, "DeleteBucket", true
		case http.MethodPost:
			if has("delete") {
				return a.deleteObjects, "DeleteObjects", true
			}
		case http.MethodGet:
			switch {
			case has("location"):
				return a.getLocation, "GetBucketLocation", false
			case has("versioning"):
				return a.getVersioning, "GetBucketVersioning", false
			case has("uploads"):
				return a.listUploads, "ListMultipartUploads", false
			case qs.Get("list-type") == "2":
				return a.listObjectsV2, "ListObjectsV2", false
			default:
				return a.listObjectsV1, "ListObjects", false
			}
		}
		return methodNotAllowed, "Unknown", !read
	}
	for _, sub := range []string{"acl", "tagging", "legal-hold", "retention", "torrent", "restore", "select", "attributes"} {
		if has(sub) {
			return notImpl("Object " + sub)
		}
	}
	switch r.Method {
	case http.MethodPut:
		if has("uploadId") || has("partNumber") {
			if r.Header.Get("X-Amz-Copy-Source") != "" {
				return notImpl("UploadPartCopy")
			}
			return a.uploadPart, "UploadPart", true
		}
		if r.Header.Get("X-Amz-Copy-Source") != "" {
			return a.copyObject, "CopyObject", true
		}
		return a.putObject, "PutObject", true
	case http.MethodGet:
		if has("uploadId") {
			return a.listParts, "ListParts", false
		}
		return a.getObject, "GetObject", false
	case http.MethodHead:
		return a.getObject, "HeadObject", false
	case http.MethodDelete:
		if has("uploadId") {
			return a.abortUpload, "AbortMultipartUpload", true
		}
		return a.deleteObject, "DeleteObject", true
	case http.MethodPost:
		if has("uploads") {
			return a.createUpload, "CreateMultipartUpload", true
		}
		if has("uploadId") {
			return a.completeUpload, "CompleteMultipartUpload", true
		}
	}
	return methodNotAllowed, "Unknown", !read
}

func methodNotAllowed(q *request) error {
	return objects.Errorf(objects.CodeMethodNotAllowed, "The specified method is not allowed against this resource.")
}

// statusOf is S3's status for each code.
var statusOf = map[string]int{
	objects.CodeNoSuchBucket:          http.StatusNotFound,
	objects.CodeNoSuchKey:             http.StatusNotFound,
	objects.CodeNoSuchUpload:          http.StatusNotFound,
	objects.CodeBucketExists:          http.StatusConflict,
	objects.CodeBucketNotEmpty:        http.StatusConflict,
	objects.CodeConditionalConflict:   http.StatusConflict,
	objects.CodePreconditionFailed:    http.StatusPreconditionFailed,
	objects.CodeNotModified:           http.StatusNotModified,
	objects.CodeInvalidRange:          http.StatusRequestedRangeNotSatisfiable,
	objects.CodeEntityTooLarge:        http.StatusBadRequest,
	objects.CodeAccessDenied:          http.StatusForbidden,
	objects.CodeQuotaExceeded:         http.StatusForbidden,
	objects.CodeMethodNotAllowed:      http.StatusMethodNotAllowed,
	objects.CodeNotImplemented:        http.StatusNotImplemented,
	objects.CodeMissingContentLength:  http.StatusLengthRequired,
	objects.CodeInternalError:         http.StatusInternalServerError,
	objects.CodeSlowDown:              http.StatusServiceUnavailable,
	objects.CodeServiceUnavailable:    http.StatusServiceUnavailable,
	objects.CodeXAmzContentSHA256Mism: http.StatusBadRequest,
}

// fail answers err as S3 does: an XML Error body with the code (none for
// HEAD and 304).
func (a *API) fail(q *request, err error) {
	code, msg, status := objects.CodeOf(err), err.Error(), 0
	var se *sigv4.Error
	switch {
	case errors.As(err, &se):
		code, msg, status = se.Code, se.Message, se.Status
	case code != "":
		status = statusOf[code]
		if status == 0 {
			status = http.StatusBadRequest
		}
	case errors.Is(err, context.Canceled) || isClientGone(err):
		code, msg, status = objects.CodeIncompleteBody, "the client went away", 499
	default:
		a.log.Error("s3 request failed", "op", q.op, "environment", q.env, "bucket", q.bucket, "key", q.key, "err", err)
		code, msg, status = objects.CodeInternalError, "We encountered an internal error. Please try again.", http.StatusInternalServerError
	}
	q.status = status
	if status == 499 {
		return
	}
	h := q.w.Header()
	keep := map[string]bool{"X-Amz-Request-Id": true, "Server": true}
	switch status {
	case http.StatusRequestedRangeNotSatisfiable:
		keep["Content-Range"] = true
	case http.StatusNotModified:
		keep["Etag"], keep["Last-Modified"] = true, true
	}
	for k := range h {
		if !keep[k] {
			h.Del(k)
		}
	}
	if q.r.Method == http.MethodHead || status == http.StatusNotModified {
		q.w.WriteHeader(status)
		return
	}
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	resource := q.r.URL.Path
	body, _ := xml.Marshal(errorBody{Code: code, Message: msg, Resource: resource, BucketN: q.bucket, Key: q.key, RequestID: q.id})
	h.Set("Content-Type", "application/xml")
	// The body of a request refused before it was read must not be left
	// for the connection to drain a gigabyte of: close it.
	if q.r.ContentLength != 0 && q.r.Method != http.MethodGet {
		h.Set("Connection", "close")
	}
	q.w.WriteHeader(status)
	q.w.Write([]byte(xml.Header))
	q.w.Write(body)
}

func isClientGone(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF)
}

// reply writes v as an XML body.
func reply(q *request, status int, v any) error {
	b, err := xml.Marshal(v)
	if err != nil {
		return fmt.Errorf("s3api: encode answer: %w", err)
	}
	q.w.Header().Set("Content-Type", "application/xml")
	q.status = status
	q.w.WriteHeader(status)
	q.w.Write([]byte(xml.Header))
	n, _ := q.w.Write(b)
	q.out += int64(n)
	return nil
}

func noContent(q *request, status int) error {
	q.status = status
	q.w.WriteHeader(status)
	return nil
}

// readXML reads a small XML request body.
func readXML(q *request, v any) error {
	b, err := io.ReadAll(io.LimitReader(q.body, 2<<20))
	if err != nil {
		return err
	}
	if err := xml.Unmarshal(b, v); err != nil {
		return objects.Errorf(objects.CodeMalformedXML, "The XML you provided was not well-formed or did not validate against our published schema: %v", err)
	}
	return nil
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}
