// Package job is the push fan-out stage. It consumes pushmsg.Msg values from
// the bus topic bus.TopicPush and hands them to the comet nodes that hold
// their targets:
//
//   - Keys pushes go to the one comet named in the message. The keys pushes
//     of one bus batch for one comet leave in one PushKeysBatch call (split
//     at 1 MiB of packets), in bus order, which is the order each
//     connection receives them in.
//   - Room pushes are batched per room, adaptively: a lone message leaves at
//     once, and messages that arrive while the room's previous flush is
//     less than Config.FlushInterval old (or still in flight) are merged
//     into one Op 9 batch, so that under load each comet gets at most one
//     PushRoom per room per interval (plus one per full batch). A batch goes
//     only to the comets that the session registry lists for the room.
//   - Broadcasts go to every known comet.
//
// Pushes run concurrently across comets and in order per comet and room.
// The bus handler returns only when its messages were handed to the comets
// (each Comet call returned), so a crash before that redelivers them: the
// stage is at least once. A redelivered room or broadcast message may reach
// some clients twice; room pushes are best-effort live traffic and clients
// of keyed IM pushes deduplicate by message id/seq. Push errors (a comet
// down or slow) are counted and logged, not retried: the comet's clients
// reconnect and Sync.
//
// The one-process server runs this code on the in-process bus; the
// distributed mode runs the same code on Kafka.
package job
