// The console's frame: a screen per part of the pipeline, chosen by the
// URL's hash (#/sql?…), so that any screen, query or chart can be shared
// as a link. It asks for a key when the API wants one.
import { useEffect, useState } from 'preact/hooks'
import { APIError, get, getKey, setKey, type Whoami } from './api'
import { Overview } from './screens/overview'
import { Live } from './screens/live'
import { Topics } from './screens/topics'
import { Failed } from './screens/failed'
import { Lake } from './screens/lake'
import { SQL } from './screens/sql'
import { Jobs } from './screens/jobs'

export interface Route {
  screen: string
  params: URLSearchParams
}

export function parseRoute(hash: string): Route {
  const h = hash.replace(/^#\/?/, '')
  const [screen, query] = h.split('?', 2)
  return { screen: screen || 'overview', params: new URLSearchParams(query ?? '') }
}

// go changes the route; replace keeps the browser's history short for
// changes made while typing.
export function go(screen: string, params?: Record<string, string | undefined>, replace = false) {
  const p = new URLSearchParams()
  for (const [k, v] of Object.entries(params ?? {})) if (v) p.set(k, v)
  const q = p.toString()
  const url = '#/' + screen + (q ? '?' + q : '')
  if (replace) history.replaceState(null, '', url)
  else location.hash = url
  if (replace) window.dispatchEvent(new HashChangeEvent('hashchange'))
}

const screens: [string, string][] = [
  ['overview', 'Overview'],
  ['live', 'Live events'],
  ['topics', 'Topics'],
  ['failed', 'Failed events'],
  ['lake', 'Lake'],
  ['sql', 'SQL'],
  ['jobs', 'Jobs and checks'],
]

export function App() {
  const [route, setRoute] = useState(parseRoute(location.hash))
  const [who, setWho] = useState<Whoami | null>(null)
  const [needKey, setNeedKey] = useState(false)
  const [keyError, setKeyError] = useState('')

  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash))
    window.addEventListener('hashchange', on)
    return () => window.removeEventListener('hashchange', on)
  }, [])

  const check = async () => {
    try {
      setWho(await get<Whoami>('/api/v1/whoami'))
      setNeedKey(false)
    } catch (e) {
      if (e instanceof APIError && e.status === 401) {
        setNeedKey(true)
        if (getKey()) setKeyError('That key was refused.')
      } else setKeyError(String((e as Error).message))
    }
  }
  useEffect(() => {
    check()
  }, [])

  if (needKey) {
    return (
      <div class="login">
        <h1>Sluice console</h1>
        <form
          onSubmit={(e) => {
            e.preventDefault()
            const k = (e.currentTarget.elements.namedItem('key') as HTMLInputElement).value.trim()
            setKey(k)
            check()
          }}
        >
          <label>
            Console key (a read key to look, an admin key to replay)
            <input name="key" type="password" autoFocus autoComplete="current-password" />
          </label>
          <button type="submit">Open</button>
        </form>
        {keyError && <div class="error">{keyError}</div>}
      </div>
    )
  }
  if (!who) return <div class="loading">Loading… {keyError && <div class="error">{keyError}</div>}</div>

  const admin = who.role === 'admin'
  return (
    <div class="frame">
      <nav>
        <div class="brand">Sluice</div>
        {screens.map(([id, label]) => (
          <a key={id} href={'#/' + id} class={route.screen === id ? 'active' : ''}>
            {label}
          </a>
        ))}
        <div class="who">
          {who.instance}
          <br />
          {who.auth ? (admin ? 'admin key' : 'read key') : 'no keys configured'}
          {who.auth && (
            <button class="link" onClick={() => { setKey(''); location.reload() }}>
              forget key
            </button>
          )}
        </div>
      </nav>
      <main>
        {route.screen === 'overview' && <Overview />}
        {route.screen === 'live' && <Live who={who} params={route.params} />}
        {route.screen === 'topics' && <Topics params={route.params} />}
        {route.screen === 'failed' && <Failed admin={admin} params={route.params} />}
        {route.screen === 'lake' && <Lake who={who} params={route.params} />}
        {route.screen === 'sql' && <SQL who={who} admin={admin} params={route.params} />}
        {route.screen === 'jobs' && <Jobs who={who} />}
        {!screens.some(([id]) => id === route.screen) && <p>No such screen. <a href="#/overview">Overview</a></p>}
      </main>
    </div>
  )
}
