/**
 * Synthetic Llama-shaped models for the demo, tests and benchmarks: real safetensors files
 * (a header a loader can parse, tensors where it says) plus the small JSON files a model
 * directory has. Tensor bytes are an AES-CTR keystream keyed by (seed, tensor name): fast to
 * make, incompressible like real weights, and reproducible, so a test can make a "next version"
 * that changes exactly the tensors it names.
 */

import { createCipheriv, createHash } from 'node:crypto'
import { mkdir, open, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { encodeSafetensorsHeader, llamaShapedTensors } from '@swarm/chunker'
import type { LlamaShape, TensorSpec } from '@swarm/chunker'

export interface SyntheticModelInit extends LlamaShape {
  /** number of safetensors shards (default 1) */
  shards?: number
  seed?: string
  /** tensors whose bytes differ from the base model (any value other than the base seed) */
  changed?: Record<string, string>
  /** tensors with another shape than the base model */
  reshaped?: Record<string, number[]>
}

export interface SyntheticModel {
  dir: string
  files: string[]
  totalBytes: number
  tensors: TensorSpec[]
}

const WRITE_BLOCK = 8 * 1024 * 1024

function keystream (seed: string, name: string): (length: number) => Buffer {
  const key = createHash('sha256').update(seed).update('\0').update(name).digest()
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32))
  const zeros = Buffer.alloc(WRITE_BLOCK)
  return length => cipher.update(zeros.subarray(0, length))
}

/** Splits tensors into `shards` runs of roughly equal bytes, keeping file order. */
function shard (tensors: TensorSpec[], shards: number, bytesOf: (t: TensorSpec) => number): TensorSpec[][] {
  const total = tensors.reduce((sum, t) => sum + bytesOf(t), 0)
  const out: TensorSpec[][] = Array.from({ length: shards }, () => [])
  let acc = 0
  for (const t of tensors) {
    const index = Math.min(shards - 1, Math.floor(acc / total * shards))
    out[index]?.push(t)
    acc += bytesOf(t)
  }
  return out.filter(s => s.length > 0)
}

export async function writeSyntheticModel (dir: string, init: SyntheticModelInit): Promise<SyntheticModel> {
  const seed = init.seed ?? 'swarm'
  const shards = init.shards ?? 1
  const tensors = llamaShapedTensors(init).map(t => init.reshaped?.[t.name] != null ? { ...t, shape: init.reshaped[t.name] as number[] } : t)
  const elementBytes = (t: TensorSpec): number => ({ F32: 4, F16: 2, BF16: 2, I8: 1, U8: 1 } as Record<string, number>)[t.dtype] ?? 4
  const bytesOf = (t: TensorSpec): number => t.shape.reduce((a, b) => a * b, 1) * elementBytes(t)
  await mkdir(dir, { recursive: true })

  const groups = shard(tensors, shards, bytesOf)
  const files: string[] = []
  let totalBytes = 0
  const weightMap: Record<string, string> = {}
  for (const [i, group] of groups.entries()) {
    const name = groups.length === 1 ? 'model.safetensors' : `model-${String(i + 1).padStart(5, '0')}-of-${String(groups.length).padStart(5, '0')}.safetensors`
    const encoded = encodeSafetensorsHeader(group, { format: 'pt' })
    const fd = await open(join(dir, name), 'w')
    try {
      await fd.write(encoded.header, 0, encoded.header.length, 0)
      for (const tensor of encoded.tensors) {
        const next = keystream(init.changed?.[tensor.name] ?? seed, tensor.name)
        for (let offset = tensor.start; offset < tensor.end; offset += WRITE_BLOCK) {
          const length = Math.min(WRITE_BLOCK, tensor.end - offset)
          await fd.write(next(length), 0, length, offset)
        }
        weightMap[tensor.name] = name
      }
    } finally {
      await fd.close()
    }
    files.push(name)
    totalBytes += encoded.size
  }

  const small: Record<string, unknown> = {
    'config.json': { architectures: ['LlamaForCausalLM'], hidden_size: init.hidden, intermediate_size: init.intermediate, num_hidden_layers: init.layers, vocab_size: init.vocab, torch_dtype: 'bfloat16' },
    'generation_config.json': { bos_token_id: 1, eos_token_id: 2 },
    'tokenizer_config.json': { model_max_length: 4096, tokenizer_class: 'LlamaTokenizer' },
    'tokenizer.json': { version: '1.0', model: { type: 'BPE', vocab: Object.fromEntries(Array.from({ length: 256 }, (_, i) => [`t${i}`, i])) } }
  }
  if (groups.length > 1) small['model.safetensors.index.json'] = { metadata: { total_size: totalBytes }, weight_map: weightMap }
  for (const [name, body] of Object.entries(small)) {
    const text = JSON.stringify(body, null, 2) + '\n'
    await writeFile(join(dir, name), text)
    files.push(name)
    totalBytes += Buffer.byteLength(text)
  }
  return { dir, files: files.sort(), totalBytes, tensors }
}
