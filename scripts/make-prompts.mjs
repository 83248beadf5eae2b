// Demo prompts for the page: the first sentence (or two, when the first is short) of each
// TinyStories validation story. Usage: node scripts/make-prompts.mjs STORIES.txt OUT.json
import { readFileSync, writeFileSync, existsSync } from 'node:fs';

const [src, out] = process.argv.slice(2);
let prompts = [];
if (existsSync(src)) {
  const stories = readFileSync(src, 'utf8').split('<|endoftext|>').map((s) => s.trim()).filter(Boolean);
  // The first story of the file is cut off at its start: skip it.
  for (const story of stories.slice(1)) {
    const sentences = story.replace(/\s+/g, ' ').match(/[^.!?]+[.!?]+["”']?/g) || [];
    let p = sentences[0] || '';
    if (p.length < 40 && sentences[1]) p += sentences[1];
    p = p.trim();
    if (p.length >= 10 && p.length <= 200) prompts.push(p);
  }
} else {
  console.error(`[build] ${src} not found: using a few built-in demo prompts`);
  prompts = ['Once upon a time, there was a little girl named Lily.', 'Tom had a big red ball.', 'One day, a cat saw a bird in the tree.'];
}
writeFileSync(out, JSON.stringify(prompts, null, 1));
console.error(`[build] ${prompts.length} demo prompts -> ${out}`);
