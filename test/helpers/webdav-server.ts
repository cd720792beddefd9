import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { freePort } from './free-port.js'

/**
 * nginx (Debian's nginx-light) with its WebDAV PUT, on 127.0.0.1, for uploads: files land under
 * `root`. A request must carry `X-Upload-Token: TOKEN` (the customer's header), else 401; bodies
 * over `maxBodyBytes` get nginx's 413.
 */
export interface WebDavServer {
  origin: string
  root: string
  token: string
  close: () => Promise<void>
}


async function listening (port: number, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}`)
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => { resolve(false) })
    })
    if (ok) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('nginx did not listen')
}

export async function startWebDav (dir: string, options: { token?: string; maxBodyBytes?: number } = {}): Promise<WebDavServer> {
  const token = options.token ?? 'upload-token-0123'
  const root = join(dir, 'dav-root')
  const temp = join(dir, 'dav-temp')
  mkdirSync(root, { recursive: true })
  mkdirSync(temp, { recursive: true })
  const port = await freePort()
  const conf = join(dir, 'nginx.conf')
  writeFileSync(conf, `
user root;
worker_processes 1;
daemon off;
pid ${join(temp, 'nginx.pid')};
error_log ${join(temp, 'error.log')};
events {}
http {
  access_log ${join(temp, 'access.log')};
  client_body_temp_path ${join(temp, 'body')};
  proxy_temp_path ${join(temp, 'proxy')};
  fastcgi_temp_path ${join(temp, 'fastcgi')};
  uwsgi_temp_path ${join(temp, 'uwsgi')};
  scgi_temp_path ${join(temp, 'scgi')};
  server {
    listen 127.0.0.1:${port};
    root ${root};
    client_max_body_size ${options.maxBodyBytes ?? 0};
    location / {
      if ($http_x_upload_token != "${token}") { return 401; }
      dav_methods PUT DELETE;
      create_full_put_path on;
      dav_access user:rw;
    }
  }
}
`)
  const child = spawn('nginx', ['-p', temp, '-c', conf], { stdio: 'ignore' })
  await listening(port, child)
  return {
    origin: `http://127.0.0.1:${port}`,
    root,
    token,
    close: async () => {
      if (child.exitCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM') // nginx's fast shutdown; by pid, ours
      await exited
    },
  }
}
