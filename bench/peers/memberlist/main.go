// memberlist-load: the workload of `rumor load --mode udp --workload update` run with HashiCorp
// memberlist (Debian's golang-github-hashicorp-memberlist-dev, GOPATH mode), for
// bench/peers/compare.sh. N members on 127.0.0.1 in this process, DefaultLANConfig, joined
// through member 0, 16 at a time (members that lag are repaired by a push-pull: see main);
// once every member sees N, the cluster settles for -settle-s and its idle
// traffic is measured; then the last member broadcasts one update, which every member that
// receives it queues again (rumor mongering, as rumor does), and the run ends when every member
// holds it. Traffic is what the members' transports sent: UDP datagrams and TCP stream bytes
// (push-pull). One line of key=value results on stdout.
//
// Loopback only; every wait is bounded by -max-time-s.
package main

import (
	"flag"
	"fmt"
	"io/ioutil"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

var packets, bytesSent uint64

// countingTransport counts what a member sends: datagrams, and the bytes of the streams it
// opens or accepts (both directions of a push-pull are counted once, at their sender).
type countingTransport struct {
	*memberlist.NetTransport
	streams chan net.Conn // the transport's accepted streams, wrapped once
}

func newCountingTransport(nt *memberlist.NetTransport) *countingTransport {
	t := &countingTransport{nt, make(chan net.Conn)}
	go func() {
		for c := range nt.StreamCh() {
			t.streams <- countingConn{c}
		}
		close(t.streams)
	}()
	return t
}

type countingConn struct{ net.Conn }

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	atomic.AddUint64(&bytesSent, uint64(n))
	return n, err
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	atomic.AddUint64(&packets, 1)
	atomic.AddUint64(&bytesSent, uint64(len(b)))
	return t.NetTransport.WriteTo(b, addr)
}

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := t.NetTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	atomic.AddUint64(&packets, 1) // a stream counts as one exchange
	return countingConn{c}, nil
}

func (t *countingTransport) StreamCh() <-chan net.Conn { return t.streams }

// memberlist sends through these when the transport has them (NetTransport does).
func (t *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	atomic.AddUint64(&packets, 1)
	atomic.AddUint64(&bytesSent, uint64(len(b)))
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *countingTransport) DialAddressTimeout(a memberlist.Address,
	timeout time.Duration) (net.Conn, error) {
	c, err := t.NetTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	atomic.AddUint64(&packets, 1)
	return countingConn{c}, nil
}

// member is one node's delegate: it holds the update once received and re-broadcasts it.
type member struct {
	queue   *memberlist.TransmitLimitedQueue
	mu      sync.Mutex
	value   string
	gotAt   time.Time
	hasNews int32
}

type update struct{ msg []byte }

func (u update) Invalidates(memberlist.Broadcast) bool { return false }
func (u update) Message() []byte                       { return u.msg }
func (u update) Finished()                             {}

func (m *member) NodeMeta(limit int) []byte { return nil }
func (m *member) NotifyMsg(b []byte) {
	if len(b) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.value != "" {
		return
	}
	m.value = string(b)
	m.gotAt = time.Now()
	atomic.StoreInt32(&m.hasNews, 1)
	m.queue.QueueBroadcast(update{append([]byte(nil), b...)}) // relay, as rumor mongering does
}
func (m *member) GetBroadcasts(overhead, limit int) [][]byte {
	return m.queue.GetBroadcasts(overhead, limit)
}
func (m *member) LocalState(join bool) []byte            { return nil }
func (m *member) MergeRemoteState(buf []byte, join bool) {}

// Members joined before waiting for the cluster to see them all (see main).
const joinBatch = 16

// How long a wait for membership lasts before the members that lag are repaired, and how many
// of them push-pull in one pass.
const repairEvery = 3 * time.Second
const repairsPerPass = 8

// newTransport binds a UDP and a TCP listener on one free port of 127.0.0.1. With port 0
// NetTransport takes a free TCP port and binds UDP on the same number, which another process
// may hold: then it tries again with another port (memberlist.Create does the same when it
// makes the transport itself).
func newTransport() (*memberlist.NetTransport, error) {
	var err error
	for try := 0; try < 20; try++ {
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{"127.0.0.1"}, BindPort: 0,
			Logger: log.New(ioutil.Discard, "", 0)})
		if err == nil {
			return nt, nil
		}
	}
	return nil, err
}

func rssBytes() uint64 {
	b, err := ioutil.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		var kb uint64
		if n, _ := fmt.Sscanf(l, "VmHWM: %d kB", &kb); n == 1 {
			return kb * 1024
		}
	}
	return 0
}

func main() {
	n := flag.Int("nodes", 64, "members")
	settle := flag.Float64("settle-s", 5, "seconds between membership complete and the update")
	maxTime := flag.Float64("max-time-s", 120, "bound on each wait")
	flag.Parse()
	bound := time.Duration(*maxTime * float64(time.Second))

	lists := make([]*memberlist.Memberlist, *n)
	members := make([]*member, *n)
	start := time.Now()
	// sees reports whether members [0, upto) all count at least `want` live members.
	sees := func(upto, want int) bool {
		for _, l := range lists[:upto] {
			if l.NumMembers() < want {
				return false
			}
		}
		return true
	}
	lastReport := time.Now()
	report := func(upto int) {
		if time.Since(lastReport) < 5*time.Second {
			return
		}
		lastReport = time.Now()
		least, full := upto, 0
		for _, l := range lists[:upto] {
			if k := l.NumMembers(); k < least {
				least = k
			}
			if l.NumMembers() == upto {
				full++
			}
		}
		fmt.Fprintf(os.Stderr, "memberlist-load: forming: %d/%d members see all %d; the least sees %d\n",
			full, upto, upto, least)
	}
	// await waits until members [0, upto) see one another. Every repairEvery of waiting, those
	// that still see fewer push-pull once with the member that sees the most (memberlist.Join:
	// a TCP exchange of whole tables, both ways). memberlist repairs a lost alive message by its
	// own push-pull, but only every 30 s scaled by the cluster size (120 s at N = 256), and
	// alive messages are lost here: a member's handoff queue (1,024) overflows while many
	// members gossip joins at once on two busy CPUs. This is what an operator's retry-join
	// does; the exchanges are counted as traffic (before the settle window).
	repairs := 0
	await := func(upto int) bool {
		waitStart := time.Now()
		lastRepair := waitStart
		for !sees(upto, upto) {
			if time.Since(start) > bound {
				return false
			}
			report(upto)
			if time.Since(lastRepair) >= repairEvery {
				best := 0
				for i, l := range lists[:upto] {
					if l.NumMembers() > lists[best].NumMembers() {
						best = i
					}
				}
				// At most repairsPerPass exchanges a pass, each up to memberlist's 10 s TCP
				// timeout on a starved machine, so the bound is checked between them.
				src := lists[best].LocalNode()
				done := 0
				for i, l := range lists[:upto] {
					if i == best || l.NumMembers() >= upto {
						continue
					}
					if done == repairsPerPass || time.Since(start) > bound {
						break
					}
					repairs++
					done++
					_, _ = l.Join([]string{fmt.Sprintf("%s:%d", src.Addr, src.Port)})
				}
				lastRepair = time.Now()
			}
			time.Sleep(10 * time.Millisecond)
		}
		return true
	}
	for i := 0; i < *n; i++ {
		nt, err := newTransport()
		if err != nil {
			fmt.Fprintln(os.Stderr, "memberlist-load: transport:", err)
			os.Exit(1)
		}
		cfg := memberlist.DefaultLANConfig()
		cfg.Name = fmt.Sprintf("node-%d", i)
		cfg.BindAddr, cfg.BindPort = "127.0.0.1", 0
		// Empty: the transport advertises the address and the port it was given.
		cfg.AdvertiseAddr, cfg.AdvertisePort = "", 0
		cfg.Transport = newCountingTransport(nt)
		cfg.LogOutput = ioutil.Discard
		m := &member{}
		cfg.Delegate = m
		ml, err := memberlist.Create(cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "memberlist-load: create:", err)
			os.Exit(1)
		}
		m.queue = &memberlist.TransmitLimitedQueue{NumNodes: ml.NumMembers,
			RetransmitMult: cfg.RetransmitMult}
		lists[i], members[i] = ml, m
		if i > 0 {
			seed := lists[0].LocalNode()
			if _, err := ml.Join([]string{fmt.Sprintf("%s:%d", seed.Addr, seed.Port)}); err != nil {
				fmt.Fprintln(os.Stderr, "memberlist-load: join:", err)
				os.Exit(1)
			}
		}
		// Paced joins: after every batch, wait until the members so far see one another. All
		// members share one process, so N joins at once make every member gossip N alive
		// messages together; on two busy CPUs that starved their probes (acks later than the
		// 500 ms probe timeout), members were declared dead and refuted in a loop, and at
		// N >= 128 the cluster never formed (its handoff queues overflowed, dropping alive
		// messages). memberlist's own timers are untouched: this only orders the joins.
		if (i+1)%joinBatch == 0 || i+1 == *n {
			if !await(i + 1) {
				fmt.Fprintf(os.Stderr, "memberlist-load: membership of the first %d not complete in time\n", i+1)
				os.Exit(1)
			}
		}
	}
	formed := time.Since(start)

	p0, b0 := atomic.LoadUint64(&packets), atomic.LoadUint64(&bytesSent)
	time.Sleep(time.Duration(*settle * float64(time.Second)))
	p1, b1 := atomic.LoadUint64(&packets), atomic.LoadUint64(&bytesSent)
	nodeS := float64(*n) * *settle

	writer := members[*n-1]
	writeAt := time.Now()
	writer.NotifyMsg([]byte("load/update=v1"))
	for {
		all := true
		for _, m := range members {
			if atomic.LoadInt32(&m.hasNews) == 0 {
				all = false
				break
			}
		}
		if all {
			break
		}
		if time.Since(writeAt) > bound {
			fmt.Fprintln(os.Stderr, "memberlist-load: the update did not reach every member in time")
			os.Exit(1)
		}
		time.Sleep(time.Millisecond)
	}
	p2, b2 := atomic.LoadUint64(&packets), atomic.LoadUint64(&bytesSent)
	var last time.Time
	for _, m := range members {
		m.mu.Lock()
		if m.gotAt.After(last) {
			last = m.gotAt
		}
		m.mu.Unlock()
	}
	took := last.Sub(writeAt)
	round := memberlist.DefaultLANConfig().GossipInterval
	fmt.Fprintf(os.Stderr, "memberlist-load: %d joins (paced, %d at a time), every member saw N "+
		"after %.2f s; %d repair push-pulls\n", *n-1, joinBatch, formed.Seconds(), repairs)
	fmt.Printf("nodes=%d formation_s=%.2f rounds=%.1f update_ms=%.0f update_packets=%d "+
		"update_bytes=%d idle_packets_per_node_s=%.2f idle_bytes_per_node_s=%.1f "+
		"rss_per_node_bytes=%d\n",
		*n, formed.Seconds(), float64(took)/float64(round), float64(took)/1e6, p2-p1, b2-b1,
		float64(p1-p0)/nodeS, float64(b1-b0)/nodeS, rssBytes()/uint64(*n))
	for _, l := range lists {
		l.Shutdown()
	}
}
