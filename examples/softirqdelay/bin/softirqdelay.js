#!/usr/bin/env node
import '../dist/softirqdelay.js';
