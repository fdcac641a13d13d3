// Failed events: dead letters by stage and reason over time, each with its
// errors (their paths marked in the original) and the original; fix one in
// the editor and send it back to the raw topic, or send back every dead
// letter a filter selects. Each replay is recorded, and a dead letter is
// never sent twice.
import { useState } from 'preact/hooks'
import { APIError, get, getName, post, setName, type DeadLetter, type ReplayReport } from '../api'
import { go } from '../app'
import { Chart } from '../chart'
import { ErrorBox, JSONView, Pager, Table, ago, num, usePoll } from '../ui'

interface Page {
  dead_letters: DeadLetter[]
  next?: string
}
interface Replay {
  replay_id: string
  by: string
  at: string
  filter?: { stage?: string; reason?: string; since?: string; until?: string }
  dead_letters: number
  fixed: number
}

const reasons = ['', 'invalid_json', 'missing_field', 'wrong_type', 'empty_field', 'schema_violation', 'enrichment_not_found', 'enrichment_failed', 'late_event', 'type_mismatch', 'index_rejected']

function bucketFor(since: string): string {
  const m = /^(\d+)(h|m)$/.exec(since)
  if (m && (m[2] === 'm' || Number(m[1]) <= 2)) return '1m'
  if (m && Number(m[1]) <= 48) return '10m'
  return '1h'
}

export function Failed({ admin, params }: { admin: boolean; params: URLSearchParams }) {
  const stage = params.get('stage') ?? ''
  const reason = params.get('reason') ?? ''
  const since = params.get('since') ?? '24h'
  const after = params.get('after') ?? ''
  const selected = params.get('dl') ?? ''
  const [prev, setPrev] = useState<string[]>([])
  const [bulk, setBulk] = useState<ReplayReport | null>(null)
  const [busy, setBusy] = useState('')
  const [bulkError, setBulkError] = useState('')
  const filter = { stage, reason, since }

  const page = usePoll(() => get<Page>('/api/v1/deadletters', { ...filter, after, limit: 50 }), 0, [stage, reason, since, after])
  const stats = usePoll(() => get<{ buckets: { time: string; stage: string; reason: string; count: number }[] }>('/api/v1/deadletters/stats', { stage, reason, since, bucket: bucketFor(since) }), 15000, [stage, reason, since])
  const replays = usePoll(() => get<{ replays: Replay[] }>('/api/v1/replays'), 0, [bulk])

  const set = (k: string, v: string) => {
    setPrev([])
    setBulk(null)
    go('failed', { ...filter, [k]: v })
  }
  const replayAll = async (dryRun: boolean) => {
    setBusy(dryRun ? 'counting' : 'replaying')
    setBulkError('')
    try {
      setBulk(await post<ReplayReport>('/api/v1/deadletters/replay', { ...filter, dry_run: dryRun, by: getName() }))
    } catch (e) {
      setBulkError(String((e as Error).message))
    }
    setBusy('')
  }

  return (
    <section>
      <h1>Failed events</h1>
      <div class="toolbar">
        <label>Stage <select value={stage} onChange={(e) => set('stage', e.currentTarget.value)}>
          {['', 'collector', 'enricher', 'aggregator', 'loader'].map((s) => <option key={s} value={s}>{s || 'any'}</option>)}
        </select></label>
        <label>Reason <select value={reason} onChange={(e) => set('reason', e.currentTarget.value)}>
          {reasons.map((r) => <option key={r} value={r}>{r || 'any'}</option>)}
        </select></label>
        <label>Since <select value={since} onChange={(e) => set('since', e.currentTarget.value)}>
          {['15m', '1h', '6h', '24h', '168h', '720h'].map((s) => <option key={s}>{s}</option>)}
        </select></label>
        {admin && <label>Replaying as <input defaultValue={getName()} placeholder="your name, for the record" data-testid="replay-as" onInput={(e) => setName(e.currentTarget.value)} /></label>}
        {admin && <button onClick={() => replayAll(true)} disabled={!!busy} data-testid="replay-matching">Replay all matching…</button>}
      </div>
      {bulk && (
        <div class="notice" data-testid="bulk-report">
          {bulk.dry_run ? (
            <>
              {num(bulk.matched)} match: {num(bulk.replayed)} would be sent back, {num(bulk.already_replayed)} were already, {num(bulk.unreplayable?.length ?? 0)} need fixing first.{' '}
              {bulk.replayed > 0 && <button onClick={() => replayAll(false)} disabled={!!busy} data-testid="replay-confirm">Send {num(bulk.replayed)} back to the raw topic</button>}
            </>
          ) : (
            <>Replay {bulk.replay_id}: sent {num(bulk.replayed)} back; {num(bulk.already_replayed)} had been already.</>
          )}
        </div>
      )}
      {busy && <div class="notice">{busy}…</div>}
      <ErrorBox error={bulkError} />
      <h2>Over time</h2>
      <ErrorBox error={stats.error} />
      {(stats.data?.buckets.length ?? 0) === 0 ? <p class="muted">None in this window.</p> : (
        <Chart columns={['time', 'reason', 'dead letters']} rows={stats.data!.buckets.map((b) => [b.time, b.stage + ' ' + b.reason, b.count])} spec={{ kind: 'bar', x: 'time', y: 'dead letters', series: 'reason' }} height={200} />
      )}
      <div class="split">
        <div class="grow">
          <h2>Dead letters</h2>
          <ErrorBox error={page.error} />
          {page.data && (
            <>
              <Table
                columns={['dead letter', 'written', 'stage', 'reason', 'first error', 'replayed']}
                rows={page.data.dead_letters.map((d) => [d.partition + '/' + d.offset, ago(d.time), d.stage, d.reason, d.errors[0] ? (d.errors[0].path || '/') + ': ' + d.errors[0].message : '', d.replayed_in ? 'yes' : ''])}
                selected={page.data.dead_letters.findIndex((d) => d.partition + '/' + d.offset === selected)}
                onRow={(i) => go('failed', { ...filter, after, dl: page.data!.dead_letters[i].partition + '/' + page.data!.dead_letters[i].offset })}
              />
              <Pager
                label={page.data.dead_letters.length + ' shown'}
                onPrev={prev.length ? () => { const p = [...prev]; const a = p.pop()!; setPrev(p); go('failed', { ...filter, after: a }) } : undefined}
                onNext={page.data.next ? () => { setPrev([...prev, after]); go('failed', { ...filter, after: page.data!.next }) } : undefined}
              />
            </>
          )}
        </div>
        {selected && <DeadLetterPane key={selected} coord={selected} admin={admin} onReplayed={() => { page.reload(); replays.reload() }} />}
      </div>
      <h2>Replays</h2>
      <ErrorBox error={replays.error} />
      <Table
        columns={['replay', 'at', 'by', 'dead letters', 'fixed', 'filter']}
        rows={(replays.data?.replays ?? []).map((r) => [r.replay_id, ago(r.at), r.by, r.dead_letters, r.fixed, r.filter ? JSON.stringify(r.filter) : 'one dead letter'])}
      />
    </section>
  )
}

function DeadLetterPane({ coord, admin, onReplayed }: { coord: string; admin: boolean; onReplayed: () => void }) {
  const dl = usePoll(() => get<DeadLetter>('/api/v1/deadletters/' + coord), 0, [coord])
  const [text, setText] = useState<string | null>(null)
  const [result, setResult] = useState('')
  const [error, setError] = useState('')
  const d = dl.data
  if (dl.error) return <div class="pane"><ErrorBox error={dl.error} /></div>
  if (!d) return <div class="pane">Loading…</div>
  const original = typeof d.original === 'string' ? d.original : JSON.stringify(d.original, null, 2)
  const edited = text ?? original

  const replay = async (fixed: boolean) => {
    setError('')
    setResult('')
    let body: { original?: unknown; by?: string } = { by: getName() }
    if (fixed) {
      try {
        body.original = JSON.parse(edited)
      } catch (e) {
        setError('The fixed event is not JSON: ' + (e as Error).message)
        return
      }
    }
    try {
      const r = await post<ReplayReport>('/api/v1/deadletters/' + coord + '/replay', body)
      setResult('Sent back to the raw topic in replay ' + r.replay_id + '.')
      dl.reload()
      onReplayed()
    } catch (e) {
      setError(e instanceof APIError && e.code === 'already_replayed' ? 'Already replayed: ' + e.message : String((e as Error).message))
    }
  }

  return (
    <div class="pane" data-testid="dead-letter">
      <h2>Dead letter {coord}</h2>
      <p>
        <b>{d.stage}</b> · <b>{d.reason}</b> · failed {d.failed_at} {d.root_id && <>· root_id <code>{d.root_id}</code></>}
        {d.replayed_in && <span class="badge ok">replayed in {d.replayed_in}</span>}
      </p>
      <h3>Errors</h3>
      <ul class="errors">{d.errors.map((e, i) => <li key={i}><code>{e.path || '/'}</code> {e.message}</li>)}</ul>
      <h3>Original</h3>
      <JSONView value={d.original} marked={d.errors.map((e) => e.path)} />
      {admin && !d.replayed_in && (
        <>
          <h3>Fix and send back</h3>
          <textarea class="editor" rows={14} value={edited} onInput={(e) => setText(e.currentTarget.value)} spellcheck={false} data-testid="fix-editor" />
          <div class="toolbar">
            <button onClick={() => replay(true)} data-testid="replay-fixed">Send the fixed event</button>
            <button onClick={() => replay(false)}>Send it as it was</button>
          </div>
        </>
      )}
      <ErrorBox error={error} />
      {result && <div class="notice" data-testid="replay-result">{result}</div>}
    </div>
  )
}
