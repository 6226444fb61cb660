package s3api

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"berth.dev/berth/internal/objects"
)

// --- buckets ---

func (a *API) listBuckets(q *request) error {
	bs, err := a.cfg.Store.ListBuckets(q.r.Context(), q.env)
	if err != nil {
		return err
	}
	out := listAllMyBucketsResult{Xmlns: xmlns, Owner: owner{ID: q.env, DisplayName: q.env}, Buckets: []bucketEntry{}}
	for _, b := range bs {
		out.Buckets = append(out.Buckets, bucketEntry{Name: b.Name, CreationDate: s3Time(b.Created)})
	}
	return reply(q, http.StatusOK, out)
}

func (a *API) createBucket(q *request) error {
	// The body may name a LocationConstraint: every bucket is here.
	io.Copy(io.Discard, io.LimitReader(q.body, 64<<10))
	if err := a.cfg.Store.CreateBucket(q.r.Context(), q.env, q.bucket); err != nil {
		return err
	}
	q.w.Header().Set("Location", "/"+q.bucket)
	return noContent(q, http.StatusOK)
}

func (a *API) headBucket(q *request) error {
	if _, err := a.cfg.Store.HeadBucket(q.r.Context(), q.env, q.bucket); err != nil {
		return err
	}
	q.w.Header().Set("X-Amz-Bucket-Region", a.cfg.Region)
	return noContent(q, http.StatusOK)
}

func (a *API) deleteBucket(q *request) error {
	if err := a.cfg.Store.DeleteBucket(q.r.Context(), q.env, q.bucket); err != nil {
		return err
	}
	return noContent(q, http.StatusNoContent)
}

func (a *API) getLocation(q *request) error {
	if _, err := a.cfg.Store.HeadBucket(q.r.Context(), q.env, q.bucket); err != nil {
		return err
	}
	loc := a.cfg.Region
	if loc == "us-east-1" {
		loc = "" // as S3 answers for us-east-1
	}
	return reply(q, http.StatusOK, locationConstraint{Xmlns: xmlns, Value: loc})
}

func (a *API) getVersioning(q *request) error {
	if _, err := a.cfg.Store.HeadBucket(q.r.Context(), q.env, q.bucket); err != nil {
		return err
	}
	return reply(q, http.StatusOK, versioningConfiguration{Xmlns: xmlns})
}

// --- listing ---

func maxKeys(v string, def int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, objects.Errorf(objects.CodeInvalidArgument, "max-keys %q is not a number from 0", v)
	}
	return min(n, 1000), nil
}

func encodeKey(s string, url bool) string {
	if !url {
		return s
	}
	return strings.ReplaceAll(urlQueryEscape(s), "%2F", "/")
}

func urlQueryEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

func (a *API) list(q *request, after string, max int) (objects.ListResult, error) {
	qs := q.r.URL.Query()
	if et := qs.Get("encoding-type"); et != "" && et != "url" {
		return objects.ListResult{}, objects.Errorf(objects.CodeInvalidArgument, "Invalid Encoding Method specified in Request")
	}
	if max == 0 {
		if _, err := a.cfg.Store.HeadBucket(q.r.Context(), q.env, q.bucket); err != nil {
			return objects.ListResult{}, err
		}
		return objects.ListResult{}, nil
	}
	return a.cfg.Store.List(q.r.Context(), q.env, q.bucket, objects.ListOptions{
		Prefix: qs.Get("prefix"), Delimiter: qs.Get("delimiter"), After: after, Max: max,
	})
}

func entries(res objects.ListResult, enc bool, withOwner bool, env string) ([]contents, []commonPrefix) {
	cs := make([]contents, 0, len(res.Objects))
	for _, o := range res.Objects {
		c := contents{Key: encodeKey(o.Key, enc), LastModified: s3Time(o.Modified), ETag: o.ETag, Size: o.Size,
			StorageClass: "STANDARD", ChecksumAlgorithm: o.Checksum.Algorithm}
		if withOwner {
			c.Owner = &owner{ID: env, DisplayName: env}
		}
		cs = append(cs, c)
	}
	ps := make([]commonPrefix, 0, len(res.CommonPrefixes))
	for _, p := range res.CommonPrefixes {
		ps = append(ps, commonPrefix{Prefix: encodeKey(p, enc)})
	}
	return cs, ps
}

func (a *API) listObjectsV2(q *request) error {
	qs := q.r.URL.Query()
	max, err := maxKeys(qs.Get("max-keys"), 1000)
	if err != nil {
		return err
	}
	after := qs.Get("start-after")
	token := qs.Get("continuation-token")
	if token != "" {
		b, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil {
			return objects.Errorf(objects.CodeInvalidArgument, "The continuation token provided is incorrect")
		}
		after = string(b)
	}
	res, err := a.list(q, after, max)
	if err != nil {
		return err
	}
	enc := qs.Get("encoding-type") == "url"
	out := listBucketResultV2{Xmlns: xmlns, Name: q.bucket, Prefix: encodeKey(qs.Get("prefix"), enc),
		Delimiter: encodeKey(qs.Get("delimiter"), enc), MaxKeys: max, IsTruncated: res.Truncated,
		ContinuationToken: token, StartAfter: encodeKey(qs.Get("start-after"), enc)}
	if enc {
		out.EncodingType = "url"
	}
	out.Contents, out.CommonPrefixes = entries(res, enc, qs.Get("fetch-owner") == "true", q.env)
	out.KeyCount = len(out.Contents) + len(out.CommonPrefixes)
	if res.Truncated {
		out.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(res.Next))
	}
	return reply(q, http.StatusOK, out)
}

func (a *API) listObjectsV1(q *request) error {
	qs := q.r.URL.Query()
	max, err := maxKeys(qs.Get("max-keys"), 1000)
	if err != nil {
		return err
	}
	res, err := a.list(q, qs.Get("marker"), max)
	if err != nil {
		return err
	}
	enc := qs.Get("encoding-type") == "url"
	out := listBucketResultV1{Xmlns: xmlns, Name: q.bucket, Prefix: encodeKey(qs.Get("prefix"), enc),
		Marker: encodeKey(qs.Get("marker"), enc), Delimiter: encodeKey(qs.Get("delimiter"), enc),
		MaxKeys: max, IsTruncated: res.Truncated}
	if enc {
		out.EncodingType = "url"
	}
	out.Contents, out.CommonPrefixes = entries(res, enc, true, q.env)
	if res.Truncated {
		out.NextMarker = encodeKey(res.Next, enc)
	}
	return reply(q, http.StatusOK, out)
}

// --- objects ---

// storedHeaders are the request headers an object keeps and answers with.
var storedHeaders = []string{"Content-Encoding", "Content-Disposition", "Content-Language", "Cache-Control", "Expires"}

// maxMeta is S3's bound on user metadata.
const maxMeta = 2 << 10

func metaOf(h http.Header) (objects.Meta, error) {
	m := objects.Meta{ContentType: h.Get("Content-Type"), Headers: map[string]string{}}
	if m.ContentType == "" {
		m.ContentType = "binary/octet-stream"
	}
	for _, name := range storedHeaders {
		v := h.Get(name)
		if name == "Content-Encoding" {
			// aws-chunked is how the body traveled, not what it is.
			var keep []string
			for _, e := range strings.Split(v, ",") {
				if e = strings.TrimSpace(e); e != "" && e != "aws-chunked" {
					keep = append(keep, e)
				}
			}
			v = strings.Join(keep, ",")
		}
		if v != "" {
			m.Headers[name] = v
		}
	}
	size := 0
	for name, vals := range h {
		if strings.HasPrefix(name, "X-Amz-Meta-") && len(vals) > 0 {
			m.Headers[name] = strings.Join(vals, ",")
			size += len(name) - len("X-Amz-Meta-") + len(m.Headers[name])
		}
	}
	if size > maxMeta {
		return m, objects.Errorf("MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size of %d bytes", maxMeta)
	}
	return m, nil
}

var checksumAlgs = []string{"CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"}

// checksumOf reads which additional checksum a write carries and where
// its value is: a header, or a trailer read after the body.
func (q *request) checksumOf() (alg string, expected func() string, err error) {
	h := q.r.Header
	for _, a := range checksumAlgs {
		if v := h.Get("X-Amz-Checksum-" + a); v != "" {
			return a, func() string { return v }, nil
		}
	}
	if t := strings.ToLower(strings.TrimSpace(h.Get("X-Amz-Trailer"))); strings.HasPrefix(t, "x-amz-checksum-") {
		a := strings.ToUpper(strings.TrimPrefix(t, "x-amz-checksum-"))
		if !objects.ValidChecksumAlgorithm(a) {
			return "", nil, objects.Errorf(objects.CodeInvalidRequest, "x-amz-trailer %s is not a checksum S3 knows", t)
		}
		return a, func() string {
			if q.auth.Trailer == nil {
				return ""
			}
			return q.auth.Trailer.Get(t)
		}, nil
	}
	if a := strings.ToUpper(h.Get("X-Amz-Sdk-Checksum-Algorithm")); a != "" {
		if !objects.ValidChecksumAlgorithm(a) {
			return "", nil, objects.Errorf(objects.CodeInvalidRequest, "Checksum algorithm %q is not supported", a)
		}
		return a, nil, nil
	}
	return "", nil, nil
}

func (q *request) writeOptions() (objects.WriteOptions, error) {
	alg, expected, err := q.checksumOf()
	if err != nil {
		return objects.WriteOptions{}, err
	}
	return objects.WriteOptions{Size: q.auth.ContentLength, ContentMD5: q.r.Header.Get("Content-Md5"),
		ChecksumAlgorithm: alg, ExpectedChecksum: expected}, nil
}

func writeConditions(h http.Header) objects.Conditions {
	return objects.Conditions{IfMatch: h.Get("If-Match"), IfNoneMatch: h.Get("If-None-Match")}
}

func readConditions(h http.Header, prefix string) objects.Conditions {
	c := objects.Conditions{IfMatch: h.Get(prefix + "If-Match"), IfNoneMatch: h.Get(prefix + "If-None-Match")}
	if t, err := http.ParseTime(h.Get(prefix + "If-Modified-Since")); err == nil {
		c.IfModifiedSince = t
	}
	if t, err := http.ParseTime(h.Get(prefix + "If-Unmodified-Since")); err == nil {
		c.IfUnmodifiedSince = t
	}
	return c
}

func setChecksumHeader(h http.Header, c objects.Checksum) {
	if c.Algorithm != "" && c.Value != "" {
		h.Set("X-Amz-Checksum-"+c.Algorithm, c.Value)
		if strings.Contains(c.Value, "-") {
			h.Set("X-Amz-Checksum-Type", "COMPOSITE")
		} else {
			h.Set("X-Amz-Checksum-Type", "FULL_OBJECT")
		}
	}
}

func (a *API) putObject(q *request) error {
	meta, err := metaOf(q.r.Header)
	if err != nil {
		return err
	}
	opts, err := q.writeOptions()
	if err != nil {
		return err
	}
	o, err := a.cfg.Store.Put(q.r.Context(), q.env, q.bucket, q.key, q.body, meta, opts, writeConditions(q.r.Header))
	if err != nil {
		return err
	}
	q.w.Header().Set("ETag", o.ETag)
	setChecksumHeader(q.w.Header(), o.Checksum)
	return noContent(q, http.StatusOK)
}

// byteRange parses a Range header against size: ok false means serve the
// whole object (no header, or one S3 ignores).
func byteRange(h string, size int64) (off, n int64, ok bool, err error) {
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, size, false, nil
	}
	first, last, found := strings.Cut(spec, "-")
	if !found {
		return 0, size, false, nil
	}
	if first == "" {
		k, err := strconv.ParseInt(last, 10, 64)
		if err != nil || k < 0 {
			return 0, size, false, nil
		}
		if k == 0 {
			return 0, 0, false, invalidRange(size)
		}
		k = min(k, size)
		return size - k, k, true, nil
	}
	start, err1 := strconv.ParseInt(first, 10, 64)
	if err1 != nil || start < 0 {
		return 0, size, false, nil
	}
	end := size - 1
	if last != "" {
		e, err := strconv.ParseInt(last, 10, 64)
		if err != nil || e < start {
			return 0, size, false, nil
		}
		end = min(e, size-1)
	}
	if start >= size {
		return 0, 0, false, invalidRange(size)
	}
	return start, end - start + 1, true, nil
}

func invalidRange(size int64) error {
	return objects.Errorf(objects.CodeInvalidRange, "The requested range is not satisfiable (the object has %d bytes)", size)
}

func (a *API) getObject(q *request) error {
	o, rd, err := a.cfg.Store.Get(q.r.Context(), q.env, q.bucket, q.key, readConditions(q.r.Header, ""))
	if err != nil {
		if objects.CodeOf(err) == objects.CodeNotModified {
			q.w.Header().Set("ETag", o.ETag)
			q.w.Header().Set("Last-Modified", o.Modified.UTC().Format(http.TimeFormat))
		}
		return err
	}
	defer rd.Close()
	h := q.w.Header()
	qs := q.r.URL.Query()
	off, n, partial := int64(0), o.Size, false
	if pn := qs.Get("partNumber"); pn != "" {
		num, err := strconv.Atoi(pn)
		if err != nil || num < 1 || num > max(o.Parts, 1) {
			return objects.Errorf(objects.CodeInvalidRange, "The requested partnumber is not satisfiable")
		}
		if o.Parts > 0 {
			for i := 0; i < num-1; i++ {
				off += o.Sizes[i]
			}
			n, partial = o.Sizes[num-1], true
			h.Set("X-Amz-Mp-Parts-Count", strconv.Itoa(o.Parts))
		}
	} else if rh := q.r.Header.Get("Range"); rh != "" {
		off, n, partial, err = byteRange(rh, o.Size)
		if err != nil {
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", o.Size))
			return err
		}
	} else if o.Parts > 0 {
		h.Set("X-Amz-Mp-Parts-Count", strconv.Itoa(o.Parts))
	}
	h.Set("Content-Type", o.ContentType)
	for k, v := range o.Headers {
		h.Set(k, v)
	}
	h.Set("ETag", o.ETag)
	h.Set("Last-Modified", o.Modified.UTC().Format(http.TimeFormat))
	h.Set("Accept-Ranges", "bytes")
	for _, p := range []struct{ param, header string }{
		{"response-content-type", "Content-Type"}, {"response-content-disposition", "Content-Disposition"},
		{"response-content-encoding", "Content-Encoding"}, {"response-content-language", "Content-Language"},
		{"response-cache-control", "Cache-Control"}, {"response-expires", "Expires"},
	} {
		if v := qs.Get(p.param); v != "" {
			h.Set(p.header, v)
		}
	}
	if !partial && strings.EqualFold(q.r.Header.Get("X-Amz-Checksum-Mode"), "ENABLED") {
		setChecksumHeader(h, o.Checksum)
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	status := http.StatusOK
	if partial {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, o.Size))
		status = http.StatusPartialContent
	}
	q.status = status
	q.w.WriteHeader(status)
	if q.r.Method == http.MethodHead {
		return nil
	}
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	written, err := io.CopyBuffer(q.w, rd.Section(off, n), *buf)
	q.out += written
	if err != nil {
		// Half an answer is out: cut the connection, the client must
		// not take a short body for the object.
		panic(http.ErrAbortHandler)
	}
	return nil
}

func (a *API) deleteObject(q *request) error {
	if err := a.cfg.Store.Delete(q.r.Context(), q.env, q.bucket, q.key, objects.Conditions{IfMatch: q.r.Header.Get("If-Match")}); err != nil {
		return err
	}
	return noContent(q, http.StatusNoContent)
}

func (a *API) deleteObjects(q *request) error {
	var req deleteRequest
	if err := readXML(q, &req); err != nil {
		return err
	}
	if len(req.Objects) > 1000 {
		return objects.Errorf(objects.CodeMalformedXML, "at most 1000 keys may be deleted at once")
	}
	keys := make([]string, len(req.Objects))
	for i, o := range req.Objects {
		keys[i] = o.Key
	}
	res, err := a.cfg.Store.DeleteMany(q.r.Context(), q.env, q.bucket, keys)
	if err != nil {
		return err
	}
	out := deleteResult{Xmlns: xmlns}
	for _, r := range res {
		if r.Err != nil {
			code := objects.CodeOf(r.Err)
			if code == "" {
				code = objects.CodeInternalError
			}
			out.Errors = append(out.Errors, deleteErrItem{Key: r.Key, Code: code, Message: r.Err.Error()})
		} else if !req.Quiet {
			out.Deleted = append(out.Deleted, deletedEntry{Key: r.Key})
		}
	}
	return reply(q, http.StatusOK, out)
}

func (a *API) copyObject(q *request) error {
	src := q.r.Header.Get("X-Amz-Copy-Source")
	if u, err := url.PathUnescape(src); err == nil {
		src = u
	}
	src, _, _ = strings.Cut(src, "?versionId=")
	srcBucket, srcKey, ok := strings.Cut(strings.TrimPrefix(src, "/"), "/")
	if !ok || srcBucket == "" || srcKey == "" {
		return objects.Errorf(objects.CodeInvalidArgument, "Copy Source must mention the source bucket and key: sourcebucket/sourcekey")
	}
	opts := objects.CopyOptions{
		Source: readConditions(q.r.Header, "X-Amz-Copy-Source-"),
		Dest:   writeConditions(q.r.Header),
	}
	switch d := q.r.Header.Get("X-Amz-Metadata-Directive"); d {
	case "", "COPY":
	case "REPLACE":
		meta, err := metaOf(q.r.Header)
		if err != nil {
			return err
		}
		opts.ReplaceMeta, opts.Meta = true, meta
	default:
		return objects.Errorf(objects.CodeInvalidArgument, "Unknown metadata directive %q", d)
	}
	o, err := a.cfg.Store.Copy(q.r.Context(), q.env, srcBucket, srcKey, q.bucket, q.key, opts)
	if err != nil {
		return err
	}
	return reply(q, http.StatusOK, copyObjectResult{Xmlns: xmlns, LastModified: s3Time(o.Modified), ETag: o.ETag})
}

// --- multipart ---

func (a *API) createUpload(q *request) error {
	meta, err := metaOf(q.r.Header)
	if err != nil {
		return err
	}
	alg := strings.ToUpper(q.r.Header.Get("X-Amz-Checksum-Algorithm"))
	id, err := a.cfg.Store.CreateUpload(q.r.Context(), q.env, q.bucket, q.key, meta, alg)
	if err != nil {
		return err
	}
	if alg != "" {
		q.w.Header().Set("X-Amz-Checksum-Algorithm", alg)
	}
	return reply(q, http.StatusOK, initiateMultipartUploadResult{Xmlns: xmlns, Bucket: q.bucket, Key: q.key, UploadID: id})
}

func (a *API) uploadPart(q *request) error {
	qs := q.r.URL.Query()
	n, err := strconv.Atoi(qs.Get("partNumber"))
	if err != nil {
		return objects.Errorf(objects.CodeInvalidArgument, "Part number must be an integer between 1 and %d, inclusive", objects.MaxParts)
	}
	opts, err := q.writeOptions()
	if err != nil {
		return err
	}
	p, err := a.cfg.Store.PutPart(q.r.Context(), q.env, q.bucket, q.key, qs.Get("uploadId"), n, q.body, opts)
	if err != nil {
		return err
	}
	q.w.Header().Set("ETag", p.ETag)
	setChecksumHeader(q.w.Header(), p.Checksum)
	return noContent(q, http.StatusOK)
}

func (a *API) completeUpload(q *request) error {
	var req completeMultipartUpload
	if err := readXML(q, &req); err != nil {
		return err
	}
	list := make([]objects.CompletePart, len(req.Parts))
	for i, p := range req.Parts {
		sum := p.ChecksumCRC32 + p.ChecksumCRC32C + p.ChecksumCRC64NVME + p.ChecksumSHA1 + p.ChecksumSHA256
		list[i] = objects.CompletePart{Number: p.PartNumber, ETag: p.ETag, Checksum: sum}
	}
	o, err := a.cfg.Store.CompleteUpload(q.r.Context(), q.env, q.bucket, q.key, q.r.URL.Query().Get("uploadId"), list, writeConditions(q.r.Header))
	if err != nil {
		return err
	}
	out := completeMultipartUploadResult{Xmlns: xmlns, Location: "/" + q.bucket + "/" + q.key, Bucket: q.bucket, Key: q.key, ETag: o.ETag}
	switch o.Checksum.Algorithm {
	case "CRC32":
		out.ChecksumCRC32 = o.Checksum.Value
	case "CRC32C":
		out.ChecksumCRC32C = o.Checksum.Value
	case "CRC64NVME":
		out.ChecksumCRC64NVME = o.Checksum.Value
	case "SHA1":
		out.ChecksumSHA1 = o.Checksum.Value
	case "SHA256":
		out.ChecksumSHA256 = o.Checksum.Value
	}
	return reply(q, http.StatusOK, out)
}

func (a *API) abortUpload(q *request) error {
	if err := a.cfg.Store.AbortUpload(q.r.Context(), q.env, q.bucket, q.key, q.r.URL.Query().Get("uploadId")); err != nil {
		return err
	}
	return noContent(q, http.StatusNoContent)
}

func (a *API) listUploads(q *request) error {
	qs := q.r.URL.Query()
	us, err := a.cfg.Store.ListUploads(q.r.Context(), q.env, q.bucket, qs.Get("prefix"))
	if err != nil {
		return err
	}
	out := listMultipartUploadsResult{Xmlns: xmlns, Bucket: q.bucket, Prefix: qs.Get("prefix"), MaxUploads: 1000}
	for _, u := range us {
		out.Uploads = append(out.Uploads, uploadEntry{Key: u.Key, UploadID: u.ID, Initiated: s3Time(u.Created), StorageClass: "STANDARD"})
	}
	return reply(q, http.StatusOK, out)
}

func (a *API) listParts(q *request) error {
	qs := q.r.URL.Query()
	u, ps, err := a.cfg.Store.ListParts(q.r.Context(), q.env, q.bucket, q.key, qs.Get("uploadId"))
	if err != nil {
		return err
	}
	marker, _ := strconv.Atoi(qs.Get("part-number-marker"))
	limit, err := maxKeys(qs.Get("max-parts"), 1000)
	if err != nil {
		return err
	}
	out := listPartsResult{Xmlns: xmlns, Bucket: q.bucket, Key: q.key, UploadID: u.ID, PartNumberMarker: marker,
		MaxParts: limit, StorageClass: "STANDARD", ChecksumAlgorithm: u.Algorithm}
	for _, p := range ps {
		if p.Number <= marker {
			continue
		}
		if len(out.Parts) == limit {
			out.IsTruncated = true
			break
		}
		e := partEntry{PartNumber: p.Number, LastModified: s3Time(p.Modified), ETag: p.ETag, Size: p.Size}
		switch p.Checksum.Algorithm {
		case "CRC32":
			e.ChecksumCRC32 = p.Checksum.Value
		case "CRC32C":
			e.ChecksumCRC32C = p.Checksum.Value
		case "CRC64NVME":
			e.ChecksumCRC64NVME = p.Checksum.Value
		case "SHA1":
			e.ChecksumSHA1 = p.Checksum.Value
		case "SHA256":
			e.ChecksumSHA256 = p.Checksum.Value
		}
		out.Parts = append(out.Parts, e)
		out.NextPartNumberMarker = p.Number
	}
	return reply(q, http.StatusOK, out)
}
