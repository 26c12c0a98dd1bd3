package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// scenarioTimeout bounds every scenario: a service that never answers
// does not hold the run for ever.
const scenarioTimeout = 30 * time.Second

// between returns a duration from lo to hi milliseconds.
func between(rng *rand.Rand, lo, hi int) time.Duration {
	return time.Duration(lo+rng.IntN(hi-lo+1)) * time.Millisecond
}

func (l *loader) url(pathAndQuery string) string { return l.base.String() + pathAndQuery }

// classify names what went wrong on the client's side, from a small set.
func (l *loader) classify(err error) string {
	var ne net.Error
	switch {
	case l.stop.Err() != nil:
		return "interrupted"
	case errors.Is(err, context.DeadlineExceeded):
		return "client timeout"
	case errors.Is(err, context.Canceled):
		return "hung up"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "connection closed"
	case errors.As(err, &ne) && ne.Timeout():
		return "client timeout"
	default:
		return "error"
	}
}

// get sends a GET and returns the status code, once the body is read.
func (l *loader) get(ctx context.Context, pathAndQuery string, budget time.Duration) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.url(pathAndQuery), nil)
	if err != nil {
		return "error"
	}
	if budget > 0 {
		req.Header.Set("Request-Timeout", strconv.FormatInt(budget.Milliseconds(), 10)+"ms")
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return l.classify(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return l.classify(err)
	}
	return strconv.Itoa(resp.StatusCode)
}

func (l *loader) work(ctx context.Context, rng *rand.Rand) string {
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	return l.get(ctx, fmt.Sprintf("/work?ms=%d", between(rng, 10, 100).Milliseconds()), 0)
}

// budget: the client asks for less time than the work takes; the service
// answers 504 at the budget.
func (l *loader) budget(ctx context.Context, rng *rand.Rand) string {
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	return l.get(ctx, fmt.Sprintf("/work?ms=%d", between(rng, 300, 600).Milliseconds()), between(rng, 100, 250))
}

// clientTimeout: the client's own timeout ends the request first; the
// service sees a client that went away.
func (l *loader) clientTimeout(ctx context.Context, rng *rand.Rand) string {
	ctx, cancel := context.WithTimeout(ctx, between(rng, 50, 250))
	defer cancel()
	return l.get(ctx, fmt.Sprintf("/work?ms=%d", between(rng, 300, 600).Milliseconds()), 0)
}

// hangup: the client hangs up at a random moment before the answer.
func (l *loader) hangup(ctx context.Context, rng *rand.Rand) string {
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	t := time.AfterFunc(between(rng, 20, 150), cancel)
	defer t.Stop()
	return l.get(ctx, fmt.Sprintf("/work?ms=%d", between(rng, 200, 500).Milliseconds()), 0)
}

func (l *loader) slow(ctx context.Context, _ *rand.Rand) string {
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	return l.get(ctx, "/slow", 0)
}

func (l *loader) stubborn(ctx context.Context, _ *rand.Rand) string {
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	return l.get(ctx, "/stubborn", 0)
}

// chain: half the calls carry a budget, which reaches /work downstream.
func (l *loader) chain(ctx context.Context, rng *rand.Rand) string {
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	var budget time.Duration
	if rng.IntN(2) == 0 {
		budget = between(rng, 100, 400)
	}
	return l.get(ctx, fmt.Sprintf("/chain?ms=%d", between(rng, 50, 300).Milliseconds()), budget)
}

func (l *loader) sseAll(ctx context.Context, rng *rand.Rand) string {
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	n := 5 + rng.IntN(11)
	outcome, ticks := l.readEvents(ctx, fmt.Sprintf("/events?n=%d&every=20ms", n), -1)
	if outcome == "complete" && ticks != n {
		return "ended early"
	}
	return outcome
}

// sseHangup: the client goes away after a few events, or right after the
// headers.
func (l *loader) sseHangup(ctx context.Context, rng *rand.Rand) string {
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	outcome, _ := l.readEvents(ctx, "/events?n=1000&every=20ms", rng.IntN(8))
	return outcome
}

// readEvents reads the event stream at pathAndQuery. With hangUpAfter >= 0
// it hangs up after that many tick events (0: right after the headers).
// The outcome is "complete" (the stream ended), "hung up", "cancelled:
// <reason>" (the service's last event), "cut off" (the connection ended
// inside the stream), a status code, or a client error.
func (l *loader) readEvents(ctx context.Context, pathAndQuery string, hangUpAfter int) (outcome string, ticks int) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.url(pathAndQuery), nil)
	if err != nil {
		return "error", 0
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := l.client.Do(req)
	if err != nil {
		return l.classify(err), 0
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return strconv.Itoa(resp.StatusCode), 0
	}
	if hangUpAfter == 0 {
		return "hung up", 0
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	typ, data := "", ""
	for sc.Scan() {
		line := sc.Text()
		if line == "" { // the end of an event
			switch typ {
			case "tick":
				ticks++
				if hangUpAfter > 0 && ticks >= hangUpAfter {
					return "hung up", ticks
				}
			case "cancelled":
				var c struct{ Reason string }
				json.Unmarshal([]byte(data), &c)
				return "cancelled: " + c.Reason, ticks
			}
			typ, data = "", ""
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			typ = value
		case "data":
			data += value
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) && l.stop.Err() == nil {
			return "cut off", ticks
		}
		return l.classify(err), ticks
	}
	return "complete", ticks
}

// sseStalled: a raw TCP client with a small receive buffer sends the
// request, reads a little and stops reading. The service's writes then
// block; its write deadline cuts the stream, and the client, reading
// again later, finds the connection closed.
func (l *loader) sseStalled(ctx context.Context, _ *rand.Rand) string {
	ctx, cancel := context.WithTimeout(ctx, 2*l.cfg.StallFor+scenarioTimeout)
	defer cancel()
	d := net.Dialer{Control: smallReceiveBuffer}
	var conn net.Conn
	conn, err := d.DialContext(ctx, "tcp", hostPort(l.base.Scheme, l.base.Host))
	if err != nil {
		return l.classify(err)
	}
	if l.base.Scheme == "https" {
		conn = tls.Client(conn, &tls.Config{ServerName: l.base.Hostname()})
	}
	defer conn.Close()
	defer context.AfterFunc(ctx, func() { conn.Close() })() // interrupted: stop reading at once

	_, err = fmt.Fprintf(conn, "GET %s/events?n=100000&every=10ms&pad=65536 HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nUser-Agent: canceldemo-load\r\n\r\n",
		l.base.Path, l.base.Host)
	if err != nil {
		return l.classify(err)
	}
	// A little: the status line, the headers and the start of the stream.
	buf := make([]byte, 1024)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.ReadAtLeast(conn, buf, len("HTTP/1.1 200"))
	if err != nil {
		return l.classify(err)
	}
	if status := bytes.Fields(buf[:n]); len(status) < 2 || string(status[1]) != "200" {
		if len(status) >= 2 {
			return string(status[1])
		}
		return "error"
	}
	// Stop reading, then see whether the service cut the connection.
	if err := sleep(ctx, l.cfg.StallFor); err != nil {
		return l.classify(err)
	}
	conn.SetReadDeadline(time.Now().Add(l.cfg.StallFor))
	_, err = io.Copy(io.Discard, conn)
	var ne net.Error
	switch {
	case l.stop.Err() != nil:
		return "interrupted"
	case err == nil, errors.Is(err, syscall.ECONNRESET):
		return "cut off"
	case errors.As(err, &ne) && ne.Timeout():
		return "not cut off"
	default:
		return l.classify(err)
	}
}

func hostPort(scheme, host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if scheme == "https" {
		return net.JoinHostPort(host, "443")
	}
	return net.JoinHostPort(host, "80")
}

// dialWS opens a websocket to /ws; on failure it returns the outcome.
func (l *loader) dialWS(ctx context.Context, ticks int) (*websocket.Conn, string) {
	u := *l.base
	u.Path += "/ws"
	u.RawQuery = "ticks=" + strconv.Itoa(ticks)
	c, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPClient: l.client})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, strconv.Itoa(resp.StatusCode)
		}
		return nil, l.classify(err)
	}
	return c, ""
}

// echo sends msg and reads until it comes back (skipping the ticks).
func echo(ctx context.Context, c *websocket.Conn, msg string) error {
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return err
	}
	for {
		_, p, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if string(p) == msg {
			return nil
		}
	}
}

// wsOutcome names why a websocket ended early.
func (l *loader) wsOutcome(err error) string {
	if code := websocket.CloseStatus(err); code != -1 {
		return fmt.Sprintf("closed by server %d", code)
	}
	return l.classify(err)
}

func (l *loader) wsNormal(ctx context.Context, rng *rand.Rand) string {
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	c, outcome := l.dialWS(ctx, 2)
	if c == nil {
		return outcome
	}
	defer c.CloseNow()
	for i := range 1 + rng.IntN(3) {
		if err := echo(ctx, c, "hello "+strconv.Itoa(i)); err != nil {
			return l.wsOutcome(err)
		}
		if err := sleep(ctx, between(rng, 0, 100)); err != nil {
			return l.classify(err)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		return l.wsOutcome(err)
	}
	return "closed 1000"
}

// wsVanish: the client's TCP connection closes without a close frame, as
// when a laptop lid closes.
func (l *loader) wsVanish(ctx context.Context, rng *rand.Rand) string {
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	c, outcome := l.dialWS(ctx, 1)
	if c == nil {
		return outcome
	}
	if err := echo(ctx, c, "hello"); err != nil {
		c.CloseNow()
		return l.wsOutcome(err)
	}
	sleep(ctx, between(rng, 0, 200))
	c.CloseNow() // no close frame
	return "vanished"
}

// jobCancel: starts a background job, then cancels it as an operator would,
// through the admin API, and waits to see it end.
func (l *loader) jobCancel(ctx context.Context, rng *rand.Rand) string {
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	var job struct {
		ID uint64 `json:"id"`
	}
	if outcome := l.doJSON(ctx, http.MethodPost, "/jobs?s=30", nil, http.StatusAccepted, &job); outcome != "" {
		return outcome
	}
	if err := sleep(ctx, between(rng, 100, 400)); err != nil {
		return l.classify(err)
	}
	op := "/admin/operations/" + strconv.FormatUint(job.ID, 10)
	var res struct {
		Cancelled bool `json:"cancelled"`
	}
	body := `{"reason":"manual","message":"canceldemo load: an operator pressed cancel"}`
	if outcome := l.doJSON(ctx, http.MethodPost, op+"/cancel", strings.NewReader(body), http.StatusOK, &res); outcome != "" {
		return "cancel " + outcome
	}
	if !res.Cancelled {
		return "cancel refused"
	}
	// The job ends at its next step.
	for {
		var info struct {
			Status string `json:"status"`
		}
		if outcome := l.doJSON(ctx, http.MethodGet, op, nil, http.StatusOK, &info); outcome != "" {
			return "status " + outcome
		}
		if info.Status != "running" && info.Status != "pending" {
			return "job " + info.Status
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return l.classify(err)
		}
	}
}

// doJSON sends a request and decodes a JSON answer of the status wanted
// into v; it returns "" on success, else the outcome.
func (l *loader) doJSON(ctx context.Context, method, pathAndQuery string, body io.Reader, want int, v any) string {
	req, err := http.NewRequestWithContext(ctx, method, l.url(pathAndQuery), body)
	if err != nil {
		return "error"
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return l.classify(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		io.Copy(io.Discard, resp.Body)
		return strconv.Itoa(resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return "bad answer"
	}
	return ""
}
