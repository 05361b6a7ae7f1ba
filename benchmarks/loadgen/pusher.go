package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"
)

// PushSpec describes one paced run of room pushes through the goim push API
// (POST /goim/push/room?operation=&type=&room=).
type PushSpec struct {
	// HTTPAddr is the server's HTTP address (host:port).
	HTTPAddr string
	// Op is the business operation of the pushes (>= 1000).
	Op int32
	// RoomType and Room name the room: type "live" and room "bench" is the
	// room key "live://bench".
	RoomType, Room string
	// Rate is pushes per second; Duration how long to push. Rate*Duration
	// pushes are scheduled at even intervals.
	Rate     float64
	Duration time.Duration
	// PayloadSize is the body size (at least PayloadMin).
	PayloadSize int
	// Concurrency is the number of requests allowed in flight. A push
	// whose slot comes while all are busy goes out late, and the report
	// shows the achieved rate.
	Concurrency int
	// FirstSeq is the sequence number of the first push.
	FirstSeq int64
	// AdminKey, if set, is sent as a bearer token.
	AdminKey string
}

// PushResult is what a push run did.
type PushResult struct {
	Sent      int64 // pushes answered 200 with code 0
	Errors    int64 // failed requests or refused pushes
	FirstSeq  int64
	NextSeq   int64 // first sequence number not used
	Start     time.Time
	End       time.Time
	HTTP      *Hist            // request latency in ns
	ErrorKind map[string]int64 // bounded
}

// NewPushClient returns an HTTP client suited to a pusher with the given
// concurrency (keep-alive connections, no proxy).
func NewPushClient(concurrency int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        concurrency * 2,
		MaxIdleConnsPerHost: concurrency * 2,
		IdleConnTimeout:     time.Minute,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// pushReply is the goim push API answer.
type pushReply struct {
	Code    any    `json:"code"`
	Message string `json:"message"`
}

// Push sends spec.Rate*spec.Duration room pushes at even intervals and
// waits for the answers. Each body starts with its send time and sequence
// number (PutPayload), stamped just before the request goes out.
func Push(ctx context.Context, hc *http.Client, spec PushSpec) (PushResult, error) {
	if spec.Rate <= 0 || spec.Duration <= 0 {
		return PushResult{}, errors.New("push: rate and duration must be positive")
	}
	spec.PayloadSize = max(spec.PayloadSize, PayloadMin)
	spec.Concurrency = max(spec.Concurrency, 1)
	total := int64(spec.Rate * spec.Duration.Seconds())
	if total < 1 {
		total = 1
	}
	q := url.Values{}
	q.Set("operation", strconv.Itoa(int(spec.Op)))
	q.Set("type", spec.RoomType)
	q.Set("room", spec.Room)
	target := "http://" + spec.HTTPAddr + "/goim/push/room?" + q.Encode()

	res := PushResult{FirstSeq: spec.FirstSeq, NextSeq: spec.FirstSeq + total, HTTP: NewHist(), ErrorKind: map[string]int64{}}
	var sent, failed atomic.Int64
	var emu sync.Mutex
	countErr := func(kind string) {
		failed.Add(1)
		emu.Lock()
		if _, ok := res.ErrorKind[kind]; ok || len(res.ErrorKind) < maxErrorKinds {
			res.ErrorKind[kind]++
		}
		emu.Unlock()
	}
	period := float64(time.Second) / spec.Rate
	var next atomic.Int64
	res.Start = time.Now()
	var wg sync.WaitGroup
	for range spec.Concurrency {
		wg.Go(func() {
			body := make([]byte, spec.PayloadSize)
			for {
				i := next.Add(1) - 1
				if i >= total || ctx.Err() != nil {
					return
				}
				due := res.Start.Add(time.Duration(float64(i) * period))
				if d := time.Until(due); d > 0 {
					t := time.NewTimer(d)
					select {
					case <-ctx.Done():
						t.Stop()
						return
					case <-t.C:
					}
				}
				t0 := time.Now()
				PutPayload(body, t0.UnixNano(), spec.FirstSeq+i)
				if err := pushOnce(ctx, hc, target, spec.AdminKey, body); err != nil {
					countErr(err.Error())
					continue
				}
				res.HTTP.Record(int64(time.Since(t0)))
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	res.End = time.Now()
	res.Sent, res.Errors = sent.Load(), failed.Load()
	return res, ctx.Err()
}

func pushOnce(ctx context.Context, hc *http.Client, target, adminKey string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if adminKey != "" {
		req.Header.Set("Authorization", "Bearer "+adminKey)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("http: %s", reason(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("http body: %s", reason(err))
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("http %d", resp.StatusCode)
	}
	var r pushReply
	if err := sonic.Unmarshal(b, &r); err != nil {
		return errors.New("bad reply")
	}
	switch c := r.Code.(type) {
	case float64:
		if c == 0 {
			return nil
		}
	case string:
		if c == "0" || c == "" {
			return nil
		}
	}
	return fmt.Errorf("code %v", r.Code)
}
