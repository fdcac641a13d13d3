// The console reads only the documented API under /api/v1/, with the key
// the user gave (kept in this browser's localStorage), as any client would.

const keyName = 'sluice-console-key'

export function getKey(): string {
  return localStorage.getItem(keyName) ?? ''
}

export function setKey(k: string) {
  if (k) localStorage.setItem(keyName, k)
  else localStorage.removeItem(keyName)
}

const nameKey = 'sluice-console-name'

// The name replays are recorded under, as the user gave it.
export function getName(): string {
  return localStorage.getItem(nameKey) ?? ''
}

export function setName(n: string) {
  localStorage.setItem(nameKey, n)
}

export class APIError extends Error {
  constructor(public status: number, public code: string, message: string) {
    super(message)
  }
}

function headers(extra?: Record<string, string>): Record<string, string> {
  const h: Record<string, string> = { Accept: 'application/json', ...extra }
  const k = getKey()
  if (k) h.Authorization = 'Bearer ' + k
  return h
}

async function answer<T>(res: Response): Promise<T> {
  if (res.status === 204) return undefined as T
  const text = await res.text()
  let body: any = null
  try {
    body = text ? JSON.parse(text) : null
  } catch {
    body = null
  }
  if (!res.ok) {
    const msg = body?.message ?? (text || res.statusText)
    throw new APIError(res.status, body?.error ?? 'error', msg)
  }
  return body as T
}

export async function get<T>(path: string, params?: Record<string, string | number | undefined>): Promise<T> {
  const u = new URL(path, location.origin)
  for (const [k, v] of Object.entries(params ?? {})) {
    if (v !== undefined && v !== '') u.searchParams.set(k, String(v))
  }
  return answer<T>(await fetch(u, { headers: headers() }))
}

export async function post<T>(path: string, body: unknown): Promise<T> {
  return answer<T>(await fetch(path, { method: 'POST', headers: headers({ 'Content-Type': 'application/json' }), body: JSON.stringify(body) }))
}

export async function del(path: string): Promise<void> {
  return answer<void>(await fetch(path, { method: 'DELETE', headers: headers() }))
}

// withKey adds the key to a URL that the browser fetches itself
// (EventSource, a download link), which cannot send headers.
export function withKey(path: string): string {
  const k = getKey()
  if (!k) return path
  return path + (path.includes('?') ? '&' : '?') + 'key=' + encodeURIComponent(k)
}

// Types of the API's answers, as internal/console writes them.
export interface Component {
  name: string
  state: string
  ready: boolean
  reasons?: string[]
  last_error?: { message: string; at: string }
  records: number
  records_per_second: number
  consumer_groups?: string[]
}
export interface PartitionLag {
  topic: string
  partition: number
  committed: number
  end: number
  lag: number
  lag_seconds: number
}
export interface GroupLag {
  group: string
  state: string
  members: number
  lag: number
  partitions: PartitionLag[]
}
export interface Status {
  instance_id: string
  started_at: string
  ready: boolean
  components: Component[]
  consumer_groups: GroupLag[]
  lag_error?: string
}
export interface ShownRecord {
  topic: string
  partition: number
  offset: number
  timestamp: string
  key?: string
  headers?: Record<string, string>
  value: unknown
}
export interface FieldError {
  path: string
  message: string
}
export interface DeadLetter {
  partition: number
  offset: number
  time: string
  stage: string
  reason: string
  errors: FieldError[]
  failed_at: string
  root_id?: string
  original: unknown
  replayed_in?: string
}
export interface ReplayReport {
  replay_id?: string
  matched: number
  already_replayed: number
  replayed: number
  dry_run?: boolean
  unreplayable?: { partition: number; offset: number; reason: string }[]
}
export interface QueryPage {
  columns: string[]
  types: string[]
  rows: unknown[][]
  offset: number
  more: boolean
  elapsed_ms: number
}
export interface LakeTable {
  table: string
  format: string
  files: number
  bytes: number
  rows: number
  snapshot?: number
  snapshot_time?: string
  snapshots?: number
  version?: number
}
export interface Whoami {
  role: string
  auth: boolean
  lake: boolean
  topics: { raw: string; dlq: string }
  instance: string
}
