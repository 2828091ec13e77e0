// Test servers run as child processes (Azurite, nginx): how they are stopped.
import { rm } from 'node:fs/promises'

/** Ends `child` (SIGTERM, SIGKILL after 5 s), waits for `exited`, then removes its temp dir `dir`. */
export async function stopServer (child, exited, dir) {
  if (child.exitCode === null) {
    child.kill('SIGTERM')
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 5000)
    await exited
    clearTimeout(timer)
  }
  await rm(dir, { recursive: true, force: true })
}
