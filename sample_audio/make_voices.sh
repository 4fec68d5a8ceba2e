#!/usr/bin/env bash
# Regenerate voice_1.wav ... voice_4.wav with espeak-ng and sox.
# Requires: espeak-ng (tested 1.51) and sox (tested 14.4.2), e.g. `apt-get install espeak-ng sox`.
# The texts are our own (written for this project); the output is MIT-licensed like demix.
#
# Each voice: espeak-ng speaks the text to a temporary 22.05 kHz WAV, then sox
#   - converts to 16 kHz mono 16-bit PCM (no dither, so the result is repeatable),
#   - removes leading silence and shortens every pause longer than 0.15 s to 0.15 s,
#   - pads (in case the speech is too short) and cuts to exactly 6.0 s,
#   - fades out over the last 0.1 s and normalises the peak to -3 dBFS.
set -euo pipefail
cd "$(dirname "$0")"

DUR=6.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

make_voice() {  # make_voice OUT VOICE PITCH SPEED TEXT
  local out=$1 voice=$2 pitch=$3 speed=$4 text=$5
  espeak-ng -v "$voice" -p "$pitch" -s "$speed" -w "$tmp/raw.wav" "$text"
  sox -V1 -D "$tmp/raw.wav" -r 16000 -c 1 -b 16 -e signed-integer "$out" \
    silence -l 1 0.02 0.5% -1 0.15 0.5% \
    pad 0 "$DUR" trim 0 "$DUR" \
    fade t 0 "$DUR" 0.1 \
    norm -3
}

make_voice voice_1.wav en-us+m3 35 160 \
  "The old lighthouse keeper climbed the spiral stairs every evening, counting each step \
out loud, and when he reached the top he wound the great clock and watched the ships \
sail slowly past the rocks."

make_voice voice_2.wav en+f3 70 170 \
  "Please remember to water the tomatoes on Tuesday, feed the two cats before noon, \
and leave the blue bicycle in the garden shed, because the forecast says heavy rain \
is coming this weekend."

make_voice voice_3.wav en-gb-scotland+m1 50 145 \
  "Seven brave engineers built a wooden bridge across the river in only nine days, \
using nothing but rope, timber, patience and a surprisingly large number of cups of \
strong black tea."

make_voice voice_4.wav en-gb-x-rp+f4 58 185 \
  "Numbers are funny things: one plus one makes two, but a dozen eggs and a baker's \
dozen of bread rolls never seem to add up quite the same way when you are hungry."

echo "wrote voice_1.wav .. voice_4.wav (${DUR} s, 16 kHz mono PCM_16)"
