// Pieces every screen uses: polling, tables of rows, JSON shown with the
// paths of errors marked, and numbers and times as people read them.
import { useEffect, useRef, useState } from 'preact/hooks'
import type { ComponentChildren } from 'preact'

export function usePoll<T>(load: () => Promise<T>, everyMs: number, deps: unknown[] = []) {
  const [data, setData] = useState<T | null>(null)
  const [error, setError] = useState<string>('')
  const loadRef = useRef(load)
  loadRef.current = load
  useEffect(() => {
    let stopped = false
    let timer: number | undefined
    const tick = async () => {
      try {
        const d = await loadRef.current()
        if (!stopped) {
          setData(d)
          setError('')
        }
      } catch (e) {
        if (!stopped) setError(String((e as Error).message ?? e))
      }
      if (!stopped && everyMs > 0) timer = window.setTimeout(tick, everyMs)
    }
    tick()
    return () => {
      stopped = true
      if (timer) clearTimeout(timer)
    }
  }, deps)
  return { data, error, reload: () => loadRef.current().then(setData, (e) => setError(String(e.message ?? e))) }
}

export function ErrorBox({ error }: { error: string }) {
  if (!error) return null
  return <div class="error" role="alert">{error}</div>
}

export function num(n: number | undefined | null, digits = 0): string {
  if (n === undefined || n === null || Number.isNaN(n)) return '-'
  return n.toLocaleString('en-US', { maximumFractionDigits: digits })
}

export function bytes(n: number): string {
  if (n < 1024) return n + ' B'
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return v.toFixed(1) + ' ' + units[i]
}

export function ago(t: string | undefined): string {
  if (!t) return '-'
  const s = (Date.now() - Date.parse(t)) / 1000
  if (s < 60) return Math.max(0, Math.round(s)) + ' s ago'
  if (s < 3600) return Math.round(s / 60) + ' min ago'
  if (s < 86400) return Math.round(s / 3600) + ' h ago'
  return new Date(t).toISOString().slice(0, 16).replace('T', ' ')
}

export function cell(v: unknown): string {
  if (v === null || v === undefined) return 'NULL'
  if (typeof v === 'object') return JSON.stringify(v)
  return String(v)
}

export function Table({ columns, rows, onRow, selected }: {
  columns: string[]
  rows: unknown[][]
  onRow?: (i: number) => void
  selected?: number
}) {
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>{columns.map((c) => <th key={c}>{c}</th>)}</tr>
        </thead>
        <tbody>
          {rows.map((r, i) => (
            <tr key={i} class={(onRow ? 'clickable ' : '') + (selected === i ? 'selected' : '')} onClick={onRow ? () => onRow(i) : undefined}>
              {r.map((v, j) => <td key={j} class={v === null ? 'null' : ''}>{cell(v)}</td>)}
            </tr>
          ))}
        </tbody>
      </table>
      {rows.length === 0 && <p class="muted">No rows.</p>}
    </div>
  )
}

// JSONView pretty-prints a value; the members at marked JSON pointers
// (the paths of a dead letter's errors) are highlighted.
export function JSONView({ value, marked = [] }: { value: unknown; marked?: string[] }) {
  const marks = new Set(marked.map((p) => p || '/'))
  return <pre class="json">{render(value, '', 0, marks)}</pre>
}

function esc(s: string): string {
  return s.replace(/~/g, '~0').replace(/\//g, '~1')
}

function render(v: unknown, path: string, depth: number, marks: Set<string>): ComponentChildren {
  const pad = '  '.repeat(depth)
  const wrap = (node: ComponentChildren) => (marks.has(path || '/') ? <mark title={path || '/'}>{node}</mark> : node)
  if (v === null || typeof v !== 'object') {
    return wrap(<span class={'j-' + (v === null ? 'null' : typeof v)}>{JSON.stringify(v)}</span>)
  }
  const isArray = Array.isArray(v)
  const entries: [string, unknown][] = isArray ? (v as unknown[]).map((x, i) => [String(i), x]) : Object.entries(v as object)
  if (entries.length === 0) return wrap(isArray ? '[]' : '{}')
  return wrap(
    <>
      {isArray ? '[' : '{'}
      {'\n'}
      {entries.map(([k, x], i) => {
        const p = path + '/' + esc(k)
        const key = isArray ? null : <span class="j-key">{JSON.stringify(k)}</span>
        return (
          <span key={k}>
            {pad + '  '}
            {marks.has(p) ? <mark title={p}>{key}{key && ': '}{render(x, p, depth + 1, new Set())}</mark> : <>{key}{key && ': '}{render(x, p, depth + 1, marks)}</>}
            {i < entries.length - 1 ? ',' : ''}
            {'\n'}
          </span>
        )
      })}
      {pad}
      {isArray ? ']' : '}'}
    </>,
  )
}

export function Pager({ onPrev, onNext, label }: { onPrev?: () => void; onNext?: () => void; label: string }) {
  return (
    <div class="pager">
      <button disabled={!onPrev} onClick={onPrev}>← Previous</button>
      <span>{label}</span>
      <button disabled={!onNext} onClick={onNext}>Next →</button>
    </div>
  )
}
