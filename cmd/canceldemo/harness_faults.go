package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Bad input: each gets a clear status or close code, and is counted (an
// operation, a progress report, a close code) unless net/http refuses it
// before any handler runs.

// badBudgets are Request-Timeout values httpcancel must ignore, reporting
// each as a progress report of the request ("request budget ignored").
var badBudgets = []string{
	"abc", "-1s", "0", "0s", "-0.5", "1e3", "NaN", "+Inf", "Inf", "0x10",
	"99999999999999999999h", "25h", "90000", "1.5.5s", "10 s", "1,5",
	"0.0000000001", "1ns1", "\u00bd", "\xff\xfe",
	strings.Repeat("9", 65),
}

// goodBudgets parse: absurd ones are capped to the server's maximum
// (30s), and nothing is reported.
var goodBudgets = []string{"2h", "86400", "1h30m", "0.25", "24h"}

func (h *harness) scBadBudget(ctx context.Context, rng *rand.Rand) {
	const sc = "bad-budget"
	all := len(badBudgets) + len(goodBudgets)
	i := rng.IntN(all)
	bad := i < len(badBudgets)
	v := ""
	if bad {
		v = badBudgets[i]
	} else {
		v = goodBudgets[i-len(badBudgets)]
	}
	a, err := h.do(ctx, "GET", "/h/ok", http.Header{"Request-Timeout": {v}}, nil)
	if h.expectAnswer(sc, hOK, a, err, 200, completed, "") && bad {
		h.truth.addProgress(hOK, 1)
	}
}

// rawRequest sends a raw request and returns the status of the answer (0
// and an error for none).
func (h *harness) rawRequest(ctx context.Context, req string) (int, error) {
	c, err := h.dialRaw(ctx, net.Dialer{})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		return 0, err
	}
	status, _, err := readHead(bufio.NewReader(c))
	return status, err
}

// refusedByNetHTTP accounts for a request net/http answers itself: no
// handler, no operation.
func (h *harness) refusedByNetHTTP(sc string, status int, err error, want int) {
	switch {
	case err != nil:
		h.lost(sc, err)
	case status != want:
		h.truth.wrong(sc, "status %d, want %d", status, want)
	default:
		h.truth.lostRequest()
		h.truth.see(sc, strconv.Itoa(status)+" (net/http, no operation)")
	}
}

func (h *harness) scBadHeaderBytes(ctx context.Context, rng *rand.Rand) {
	const sc = "bad-header-bytes"
	values := []string{"1\x01s", "a\x00b", "1s\x7f", "x\x1b[31m"}
	headers := []string{"Request-Timeout", "Last-Event-ID"}
	paths := []string{"/h/ok", "/events?n=1&every=10ms"}
	j := rng.IntN(2)
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n%s: %s\r\n\r\n", paths[j], h.addr, headers[j], values[rng.IntN(len(values))])
	status, err := h.rawRequest(ctx, req)
	h.refusedByNetHTTP(sc, status, err, http.StatusBadRequest)
}

func (h *harness) scHugeHeader(ctx context.Context, _ *rand.Rand) {
	const sc = "huge-header"
	req := fmt.Sprintf("GET /h/ok HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n", h.addr, strings.Repeat("a", http.DefaultMaxHeaderBytes+64<<10))
	status, err := h.rawRequest(ctx, req)
	h.refusedByNetHTTP(sc, status, err, http.StatusRequestHeaderFieldsTooLarge)
}

// zeros is an endless body.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func (h *harness) scHugeBody(ctx context.Context, rng *rand.Rand) {
	const sc = "huge-body"
	req, err := h.newRequest(ctx, "POST", "/h/upload", nil, nil)
	if err != nil {
		panic(err)
	}
	if rng.IntN(2) == 0 {
		// Announced: the server answers before asking for the body, which
		// is never sent.
		req.Body = io.NopCloser(io.LimitReader(zeros{}, 10<<20))
		req.ContentLength = 10 << 20
		req.Header.Set("Expect", "100-continue")
	} else {
		// Chunked: the server reads up to its limit.
		req.Body = io.NopCloser(io.LimitReader(zeros{}, 100<<10))
		req.ContentLength = -1
	}
	resp, err := h.client.Do(req)
	var a *answer
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		a = &answer{resp.StatusCode, resp.Header, b}
	}
	h.expectAnswer(sc, hUpload, a, err, http.StatusRequestEntityTooLarge, completed, "")
}

func (h *harness) scAdminHugeBody(ctx context.Context, _ *rand.Rand) {
	const sc = "admin-huge-body"
	body := `{"reason":"manual","message":"` + strings.Repeat("m", 100<<10) + `"}`
	a := h.admin(ctx, sc, "POST", "/operations/1/cancel", jsonHeader, strings.NewReader(body))
	if a != nil {
		h.wantStatus(sc, a, http.StatusBadRequest)
	}
}

func (h *harness) wantStatus(sc string, a *answer, want int) {
	if a.status != want {
		h.truth.wrong(sc, "status %d (%q), want %d", a.status, trim(a.body), want)
		return
	}
	h.truth.see(sc, strconv.Itoa(a.status))
}

// scSSEBadID: garbage Last-Event-IDs are ignored (the stream starts at
// 0); a valid one resumes after it.
func (h *harness) scSSEBadID(ctx context.Context, rng *rand.Rand) {
	const sc = "sse-bad-id"
	type variant struct {
		header, query string
		first         string
	}
	variants := []variant{
		{header: strings.Repeat("7", 8<<10), first: "0"},
		{header: "\x80\xfe\xff binary \xc3\x28", first: "0"},
		{header: "-7", first: "0"},
		{header: "abc", first: "0"},
		{header: "1e3", first: "0"},
		{header: "99999999999999999999", first: "0"},
		{query: "1\nevent: evil\ndata: x", first: "0"},
		{query: "\x00", first: "0"},
		{query: strings.Repeat("\n", 1000), first: "0"},
		{header: "1", first: "2"},
	}
	v := variants[rng.IntN(len(variants))]
	path := "/events?n=4&every=10ms"
	if v.query != "" {
		path += "&lastEventId=" + url.QueryEscape(v.query)
	}
	var hdr http.Header
	if v.header != "" {
		hdr = http.Header{"Last-Event-Id": {v.header}}
	}
	resp, err := h.sse(ctx, path, hdr)
	if err != nil {
		h.lost(sc, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		h.truth.wrong(sc, "status %d", resp.StatusCode)
		return
	}
	first, _ := strconv.Atoi(v.first)
	h.sseEnded(sc, readSSE(resp.Body, 0), 4-first, v.first)
}

func (h *harness) scAdminNoSuchID(ctx context.Context, rng *rand.Rand) {
	const sc = "admin-no-such-id"
	id := strconv.FormatUint(1<<40+rng.Uint64N(1<<40), 10)
	cases := []struct {
		method, path string
		want         int
	}{
		{"GET", "/operations/" + id, 404},
		{"POST", "/operations/" + id + "/cancel", 404},
		{"GET", "/operations/abc", 400},
		{"GET", "/operations/-1", 400},
		{"GET", "/operations/18446744073709551616", 400},
		{"POST", "/operations/0x10/cancel", 400},
		{"GET", "/operations?status=bogus", 400},
		{"GET", "/operations?limit=abc", 400},
	}
	c := cases[rng.IntN(len(cases))]
	var hdr http.Header
	var body io.Reader
	if c.method == "POST" {
		hdr, body = jsonHeader, strings.NewReader(`{}`)
	}
	if a := h.admin(ctx, sc, c.method, c.path, hdr, body); a != nil {
		h.wantStatus(sc, a, c.want)
	}
}

func (h *harness) scAdminBadCancel(ctx context.Context, rng *rand.Rand) {
	const sc = "admin-bad-cancel"
	path := "/operations/1/cancel"
	var a *answer
	switch k := rng.IntN(6); k {
	case 0, 1, 2:
		method := []string{"GET", "PUT", "DELETE"}[k]
		a = h.admin(ctx, sc, method, path, nil, nil)
		if a != nil && a.header.Get("Allow") == "" {
			h.truth.wrong(sc, "405 without Allow")
		}
		if a != nil {
			h.wantStatus(sc, a, http.StatusMethodNotAllowed)
		}
		return
	case 3:
		a = h.admin(ctx, sc, "POST", path, jsonHeader, strings.NewReader(`{"reason":"bogus"}`))
	case 4:
		a = h.admin(ctx, sc, "POST", path, jsonHeader, strings.NewReader(`{"reason":`))
	case 5:
		hdr := http.Header{"Content-Type": {"application/json"}, "Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}
		a = h.admin(ctx, sc, "POST", path, hdr, strings.NewReader(`{}`))
		if a != nil {
			h.wantStatus(sc, a, http.StatusForbidden)
		}
		return
	}
	if a != nil {
		h.wantStatus(sc, a, http.StatusBadRequest)
	}
}

// wsFrames are malformed frames a client sends after a valid handshake.
var wsFrames = []struct {
	name  string
	frame []byte
}{
	{"reserved opcode 3", maskedFrame(0x80|0x3, []byte("x"))},
	{"reserved opcode 0xB", maskedFrame(0x80|0xB, nil)},
	{"RSV2 set", maskedFrame(0x80|0x20|0x1, []byte("x"))},
	{"RSV1 without extension", maskedFrame(0x80|0x40|0x1, []byte("x"))},
	{"ping of 126 bytes", maskedFrame(0x80|0x9, make([]byte, 126))},
	{"fragmented ping", maskedFrame(0x9, nil)},
	{"continuation first", maskedFrame(0x80|0x0, []byte("x"))},
	{"close with 1 byte", maskedFrame(0x80|0x8, []byte{3})},
	{"close with code 999", maskedFrame(0x80|0x8, []byte{0x03, 0xe7})},
	{"unmasked text", []byte{0x81, 0x01, 'x'}},
	{"length with the top bit", append([]byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0}, 1, 2, 3, 4)},
	{"garbage", []byte("\x13\x37\xde\xad\xbe\xef garbage \x00\xff")},
}

// maskedFrame builds a client frame (masked, short) with byte0 and payload.
func maskedFrame(b0 byte, payload []byte) []byte {
	f := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	default:
		f = append(f, 0x80|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	}
	key := []byte{1, 2, 3, 4}
	f = append(f, key...)
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}

// scWSGarbage: after a valid handshake, a malformed frame. The client
// notes the close code it gets (1002 from coder/websocket for most, none
// for an unmasked frame); the operation's recorded close is counted.
func (h *harness) scWSGarbage(ctx context.Context, rng *rand.Rand) {
	const sc = "ws-garbage"
	c, err := h.dialRaw(ctx, net.Dialer{})
	if err != nil {
		h.lost(sc, err)
		return
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /ws?ticks=0 HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", h.addr)
	br := bufio.NewReader(c)
	status, head, err := readHead(br)
	switch {
	case err != nil:
		h.lost(sc, err)
		return
	case status == 503 && h.shutdown.Load():
		h.truth.req(hWS, cancelled, "shutdown", 503)
		h.truth.see(sc, "503 shutdown")
		return
	case status != http.StatusSwitchingProtocols:
		h.truth.wrong(sc, "handshake: %q", head)
		return
	}
	f := wsFrames[rng.IntN(len(wsFrames))]
	c.Write(f.frame)
	code := readCloseCode(br)
	h.truth.see(sc, f.name+": "+code)
	h.truth.req(hWS, completed, "", 101)
	h.wsGarbageOutcome(sc, f.name, code)
}

// readCloseCode reads server frames until a close frame, and returns its
// code, "none" for a connection that ended without one.
func readCloseCode(br *bufio.Reader) string {
	for {
		var hd [2]byte
		if _, err := io.ReadFull(br, hd[:]); err != nil {
			return "none"
		}
		n := int(hd[1] & 0x7f)
		switch n {
		case 126:
			var l [2]byte
			if _, err := io.ReadFull(br, l[:]); err != nil {
				return "none"
			}
			n = int(binary.BigEndian.Uint16(l[:]))
		case 127:
			var l [8]byte
			if _, err := io.ReadFull(br, l[:]); err != nil {
				return "none"
			}
			n = int(binary.BigEndian.Uint64(l[:]))
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return "none"
		}
		if hd[0]&0x0f == 0x8 {
			if n < 2 {
				return "1005"
			}
			return strconv.Itoa(int(binary.BigEndian.Uint16(p)))
		}
	}
}

// wsGarbageOutcome is what the service records for a malformed frame,
// given the close code the client got.
func (h *harness) wsGarbageOutcome(sc, frame, code string) {
	switch code {
	case "1002": // coder/websocket's protocol error, recorded as ours
		h.truth.op(hWSConn, cancelled, "error")
		h.truth.wsClose(1002, "error")
	case "none": // the connection dropped before a close went out
		h.truth.op(hWSConn, cancelled, "error")
		h.truth.wsClose(1002, "error")
	default:
		h.truth.wrong(sc, "%s: close code %s", frame, code)
	}
}

func (h *harness) scBadQuery(ctx context.Context, rng *rand.Rand) {
	const sc = "bad-query"
	cases := []struct{ method, path, name string }{
		{"GET", "/work?ms=abc", hWork},
		{"GET", "/work?ms=1e99", hWork},
		{"GET", "/work?ms=-5", hWork},
		{"GET", "/events?n=-1", hEvents},
		{"GET", "/events?every=1ns", hEvents},
		{"GET", "/events?pad=99999999", hEvents},
		{"GET", "/ws?ticks=999999", hWS},
		{"POST", "/jobs?s=NaN", hJobs},
		{"POST", "/jobs?s=1e10", hJobs},
		{"GET", "/h/drip?every=1h", hDrip},
	}
	c := cases[rng.IntN(len(cases))]
	a, err := h.do(ctx, c.method, c.path, nil, nil)
	h.expectAnswer(sc, c.name, a, err, http.StatusBadRequest, completed, "")
}

func (h *harness) scOddMethod(ctx context.Context, rng *rand.Rand) {
	const sc = "odd-method"
	method := []string{"BREW", "get", "X-" + strconv.Itoa(rng.IntN(1000000))}[rng.IntN(3)]
	a, err := h.do(ctx, method, "/h/ok", nil, nil)
	h.expectAnswer(sc, hOther, a, err, http.StatusMethodNotAllowed, completed, "")
}

func (h *harness) scNotFound(ctx context.Context, rng *rand.Rand) {
	const sc = "not-found"
	a, err := h.do(ctx, "GET", "/nope/"+strconv.FormatUint(rng.Uint64(), 36), nil, nil)
	h.expectAnswer(sc, hNotFound, a, err, http.StatusNotFound, completed, "")
}
